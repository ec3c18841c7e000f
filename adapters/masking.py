"""Phone numbers for those who may see them: a `read` key gets only the last four digits.

Masking is by field name, over the whole answer (API body, event payload), so a new field that
carries a phone is masked by adding its name here, not by remembering it in every route.
"""
from __future__ import annotations

from typing import Any

PHONE_FIELDS = frozenset({"phone", "caller", "sender", "e164", "callerid", "caller_id", "number"})


def mask_number(value: str | None) -> str | None:
    if not value:
        return value
    digits = [c for c in value if c.isdigit()]
    return "****" + "".join(digits[-4:]) if len(digits) > 4 else "****"


def mask_phones(value: Any) -> Any:
    """A copy of a JSON-like value with every phone field masked."""
    if isinstance(value, dict):
        return {k: (mask_number(v) if k in PHONE_FIELDS and isinstance(v, str) else mask_phones(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_phones(v) for v in value]
    return value
