"""Calling numbers as Asterisk gives them, made comparable with the roster (E.164)."""
from __future__ import annotations

from gateway.directory.phones import sender_e164

UNKNOWN = ("", "unknown", "anonymous", "<unknown>", "restricted")


def to_e164(number: str | None, region: str = "CN") -> str | None:
    """E.164 for a number that parses; the digits as received otherwise; None when withheld."""
    if number is None or number.strip().lower() in UNKNOWN:
        return None
    return sender_e164(number, region)
