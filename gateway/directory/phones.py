"""Phone numbers, normalised to E.164 with the phonenumbers package (default region CN)."""
from __future__ import annotations

from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "CN"

# Ranges reserved for drama and drills that reach no subscriber (Ofcom: 07700 900000-900999,
# 01632 960000-960999).  libphonenumber rightly calls them invalid; the directory accepts them
# so that drills and the example roster never text a real person.
FICTIONAL_PREFIXES = ("+447700900", "+441632960")


class PhoneError(ValueError):
    pass


def normalise(raw: str, region: str = DEFAULT_REGION) -> str:
    """E.164 for a phone number as people write it ("138 0013 8000", "+86-138..."), or PhoneError."""
    text = str(raw).strip()
    if not text:
        raise PhoneError("empty phone number")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as e:
        raise PhoneError(f"{text!r} is not a phone number ({e})") from None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if is_fictional(e164) and len(e164) == 13:
        return e164
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(f"{text!r} is not a valid number for region {region}")
    return e164


def is_fictional(e164: str) -> bool:
    return e164.startswith(FICTIONAL_PREFIXES)


@lru_cache(maxsize=4096)        # the same commanders answer again and again; parsing is the costly part
def sender_e164(raw: str, region: str = DEFAULT_REGION) -> str:
    """For untrusted senders (an SMS originator, a caller id): E.164 where the number is at least
    possible, so that it matches the roster's form; otherwise the text as received (at most 40
    characters), which then matches no one."""
    text = str(raw).strip()
    try:
        number = phonenumbers.parse(text, region)
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        pass
    return text[:40]
