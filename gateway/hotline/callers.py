"""Caller history: who is calling, how often, and how their earlier calls were marked.

Computed in its own unit of work after the call's record is committed, never on the call's
path: Asterisk puts the call in the queue without asking the gateway, and the gateway's record
of the call is written without waiting for this.  Withheld and unknown numbers are their own
case: they are never counted together as if they were one caller.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, select, update

from gateway.hotline import nuisance
from gateway.hotline.config import HotlineSection
from gateway.storage.schema import hotline_calls as T

UTC = timezone.utc
WITHHELD = {"", "anonymous", "unknown", "<unknown>", "restricted", "private", "unavailable", "withheld",
            "s", "0"}
REPEAT, OFTEN_INVALID = "repeat", "often_invalid"


def is_withheld(number: str | None) -> bool:
    """No usable caller ID: withheld, restricted, unknown or empty."""
    if number is None:
        return True
    n = number.strip().lower()
    return n in WITHHELD or not any(ch.isdigit() for ch in n)


def history_tx(conn, number: str | None, at: datetime, cfg: HotlineSection = HotlineSection(),
               call_id: str | None = None, mark_call: bool = False) -> dict:
    """The caller's history as of `at` (this call, `call_id`, left out).  With `mark_call`, the
    flag is also written on the call's row (the figures count calls from flagged numbers)."""
    if is_withheld(number):
        return {"number": None, "withheld": True, "calls_24h": None, "calls_30d": None, "marks": None,
                "last": None, "flags": [], "flag": None, "nuisance": None}
    rows = conn.execute(
        select(T.c.call_id, T.c.line, T.c.arrived_at, T.c.outcome, T.c.valid, T.c.category)
        .where(and_(T.c.caller == number, T.c.arrived_at > at - timedelta(days=30), T.c.arrived_at <= at))
        .order_by(T.c.arrived_at.desc())).all()
    earlier = [r for r in rows if r.call_id != call_id]
    day_ago = at - timedelta(hours=24)
    calls_24h = sum(1 for r in earlier if _utc(r.arrived_at) > day_ago)
    valid = [r for r in earlier if r.valid is True]
    invalid = [r for r in earlier if r.valid is False]
    marks = {"valid": len(valid), "invalid": len(invalid),
             "unmarked": len(earlier) - len(valid) - len(invalid),
             "valid_categories": dict(Counter(r.category or "?" for r in valid)),
             "invalid_categories": dict(Counter(r.category or "?" for r in invalid))}
    flags = []
    if calls_24h >= cfg.repeat_calls_24h:
        flags.append(REPEAT)
    marked = len(valid) + len(invalid)
    if len(invalid) >= cfg.invalid_calls_30d and marked and len(invalid) / marked >= cfg.invalid_share_30d:
        flags.append(OFTEN_INVALID)
    last = None
    if earlier:
        r = earlier[0]
        last = {"call_id": r.call_id, "line": r.line, "arrived_at": _iso(r.arrived_at), "outcome": r.outcome,
                "valid": r.valid, "category": r.category}
    flag = ",".join(flags) or None
    if mark_call and call_id is not None:
        conn.execute(update(T).where(T.c.call_id == call_id).values(caller_flag=flag))
    entry = nuisance.active_entry(conn, number, at)
    if entry is not None:
        entry = {k: _iso(v) if isinstance(v, datetime) else v for k, v in entry.items()}
    # Plain JSON types only: the history rides on events that the stream and webhooks serialise as is.
    return {"number": number, "withheld": False, "calls_24h": calls_24h, "calls_30d": len(earlier),
            "marks": marks, "last": last, "flags": flags, "flag": flag, "nuisance": entry}


def _iso(v) -> str | None:
    return None if v is None else _utc(v).isoformat()


def _utc(v):
    return None if v is None else (v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC))
