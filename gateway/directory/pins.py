"""Members' feedback-line PINs (4 digits, optional), stored only as a salted PBKDF2 hash.

Four digits are 10,000 guesses, so the hash mainly keeps the roster's PINs out of a database
dump at a glance; what protects the line is that a caller gets two tries per call, each wrong
PIN audited (ivr/flows/feedback_line.py).  The work factor is modest because the check runs in
the database thread while the caller waits.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PIN_SHAPE = re.compile(r"^[0-9]{4}$")
_ITERATIONS = 20_000


def valid_pin(pin: str) -> bool:
    return bool(PIN_SHAPE.match(pin or ""))


def hash_pin(pin: str, *, iterations: int = _ITERATIONS) -> str:
    if not valid_pin(pin):
        raise ValueError("a PIN is exactly 4 digits")
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), bytes.fromhex(salt), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def pin_matches(pin: str, stored: str) -> bool:
    """Constant-time comparison; a malformed stored value never matches."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        got = hashlib.pbkdf2_hmac("sha256", (pin or "").encode(), bytes.fromhex(salt), int(iterations)).hex()
    except (ValueError, AttributeError):
        return False
    return hmac.compare_digest(got, digest)
