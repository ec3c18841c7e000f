"""Calling numbers as Asterisk gives them, made comparable with the roster (E.164)."""
from __future__ import annotations

import phonenumbers

UNKNOWN = ("", "unknown", "anonymous", "<unknown>", "restricted")


def to_e164(number: str | None, region: str = "CN") -> str | None:
    """E.164 for a number that parses; the digits as received otherwise; None when withheld."""
    if number is None or number.strip().lower() in UNKNOWN:
        return None
    number = number.strip()
    try:
        parsed = phonenumbers.parse(number, region)
        if phonenumbers.is_possible_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        pass
    return number[:40]
