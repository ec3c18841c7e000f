"""Hotline call records in ``hotline_calls``: writing the tracker's state, marking, figures.

Every function takes a SQLAlchemy Connection inside a transaction (``Database.run`` or
``Database.run_sync``), so the same code serves the service, the CLI and the API.
Times are stored as UTC; SQLite hands them back naive, so they are re-tagged as UTC on read.
"""
from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, insert, select, update

from gateway.hotline.tracker import ABANDONED, CALL_BACK, DEFAULT_LINES, HotlineCall
from gateway.storage.schema import audit_log, hotline_calls as T

UTC = timezone.utc

# Suggested categories (call-takers may use others): the 2011 report's kinds of valid alarm,
# and the usual reasons a call is not one.
VALID_CATEGORIES = ("police", "fire", "traffic", "rescue", "medical", "public_assistance",
                    "medical_dispute", "mass_incident", "disaster_accident", "other")
INVALID_CATEGORIES = ("silent", "prank", "misdial", "repeat", "test", "inquiry", "harassment",
                      "other")


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _utc(v: datetime | None) -> datetime | None:
    if v is None:
        return None
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def _epoch(v: datetime | None) -> float | None:
    v = _utc(v)
    return None if v is None else v.timestamp()


_TRACKED = ("line", "caller", "channel", "uniqueid", "queue", "call_taker", "hold_seconds",
            "hangup_cause", "hangup_text", "outcome", "note")
_TIMES = ("arrived_at", "ivr_at", "queue_joined_at", "answered_at", "ended_at")


def call_values(call: HotlineCall) -> dict:
    v = {k: getattr(call, k) for k in _TRACKED}
    v.update({k: _dt(getattr(call, k)) for k in _TIMES})
    if v["caller"] is not None:
        v["caller"] = v["caller"][:40]
    if v["channel"] is not None:
        v["channel"] = v["channel"][:200]
    return v


def upsert_call(conn, call: HotlineCall, now: datetime | None = None) -> int:
    """Write the tracker's view of a call (insert or update); returns the row id.

    Call-takers' fields (valid, category, marked_by) are never touched here.  A call that ended
    unanswered (abandoned, or cut off: failed) goes on the call-back list (callback_state
    'pending') the first time it is written as such.
    """
    now = now or datetime.now(UTC)
    values = call_values(call)
    values["updated_at"] = now
    row = conn.execute(select(T.c.id, T.c.callback_state).where(T.c.call_id == call.call_id)).first()
    if row is None:
        values["call_id"] = call.call_id
        if call.outcome in CALL_BACK:
            values["callback_state"] = "pending"
        return conn.execute(insert(T).values(**values)).inserted_primary_key[0]
    if call.outcome in CALL_BACK and row.callback_state is None:
        values["callback_state"] = "pending"
    conn.execute(update(T).where(T.c.id == row.id).values(**values))
    return row.id


def _row_call(r) -> HotlineCall:
    return HotlineCall(call_id=r.call_id, line=r.line, arrived_at=_epoch(r.arrived_at),
                       caller=r.caller, channel=r.channel, uniqueid=r.uniqueid,
                       ivr_at=_epoch(r.ivr_at), queue_joined_at=_epoch(r.queue_joined_at),
                       queue=r.queue, answered_at=_epoch(r.answered_at), call_taker=r.call_taker,
                       hold_seconds=r.hold_seconds, ended_at=_epoch(r.ended_at),
                       hangup_cause=r.hangup_cause, hangup_text=r.hangup_text, outcome=r.outcome,
                       note=r.note,
                       state="talking" if r.answered_at else ("queue" if r.queue_joined_at else
                                                             ("ivr" if r.ivr_at else "arrived")))


def open_calls(conn) -> list[HotlineCall]:
    """Calls with no outcome yet (live, or live when the gateway stopped)."""
    rows = conn.execute(select(T).where(T.c.outcome.is_(None)).order_by(T.c.arrived_at)).all()
    return [_row_call(r) for r in rows]


def row_dict(r) -> dict:
    d = dict(r._mapping)
    for k, v in d.items():
        if isinstance(v, datetime):
            d[k] = _utc(v)
    return d


def get_call(conn, call_id: str) -> dict | None:
    r = conn.execute(select(T).where(T.c.call_id == call_id)).first()
    return None if r is None else row_dict(r)


def mark_call(conn, call_id: str, valid: bool, category: str, by: str) -> dict:
    """A call-taker marks a call valid or invalid, with a category.  Audited.

    Raises LookupError for an unknown call, ValueError for an empty category or name."""
    category = (category or "").strip()
    by = (by or "").strip()
    if not category:
        raise ValueError("a category is required")
    if len(category) > 80:
        raise ValueError("category longer than 80 characters")
    if not by:
        raise ValueError("who marks the call is required")
    row = conn.execute(select(T.c.id, T.c.valid, T.c.category).where(T.c.call_id == call_id)).first()
    if row is None:
        raise LookupError(f"no hotline call {call_id}")
    now = datetime.now(UTC)
    conn.execute(update(T).where(T.c.id == row.id).values(valid=bool(valid), category=category,
                                                           marked_by=by[:100], updated_at=now))
    conn.execute(insert(audit_log).values(
        at=now, actor=by[:100], action="hotline.mark", subject=call_id,
        detail={"valid": bool(valid), "category": category,
                "before": {"valid": row.valid, "category": row.category}}))
    return get_call(conn, call_id)


def mark_callback(conn, call_id: str, by: str, state: str = "done") -> dict:
    """Take an abandoned call off the call-back list (``done``), or put it back (``pending``)."""
    if state not in ("done", "pending"):
        raise ValueError("state must be done or pending")
    by = (by or "").strip()
    if not by:
        raise ValueError("who called back is required")
    row = conn.execute(select(T.c.id, T.c.callback_state).where(T.c.call_id == call_id)).first()
    if row is None:
        raise LookupError(f"no hotline call {call_id}")
    if row.callback_state is None:
        raise ValueError(f"call {call_id} is not on the call-back list")
    now = datetime.now(UTC)
    conn.execute(update(T).where(T.c.id == row.id).values(
        callback_state=state, callback_by=by[:100], callback_at=now, updated_at=now))
    conn.execute(insert(audit_log).values(at=now, actor=by[:100], action="hotline.callback",
                                          subject=call_id, detail={"state": state}))
    return get_call(conn, call_id)


def callback_list(conn) -> list[dict]:
    """Unanswered calls (abandoned or cut off) still to be called back, oldest first.

    Each row also tells ``repeats`` (pending calls from the same number) and
    ``answered_since`` (the number got through on some line after this call), so that the
    call-taker sees at a glance who is still unheard.  Nothing is taken off automatically."""
    rows = conn.execute(select(T).where(T.c.callback_state == "pending")
                        .order_by(T.c.arrived_at)).all()
    out = []
    counts: dict[str, int] = {}
    for r in rows:
        if r.caller:
            counts[r.caller] = counts.get(r.caller, 0) + 1
    for r in rows:
        d = row_dict(r)
        d["repeats"] = counts.get(r.caller, 1) if r.caller else 1
        d["answered_since"] = False
        if r.caller:
            later = conn.execute(select(func.count()).select_from(T).where(and_(
                T.c.caller == r.caller, T.c.outcome == "answered",
                T.c.arrived_at > r.arrived_at))).scalar()
            d["answered_since"] = bool(later)
        d["can_call_back"] = bool(r.caller)
        out.append(d)
    return out


def day_bounds(day: date, tz) -> tuple[datetime, datetime]:
    z = ZoneInfo(tz) if isinstance(tz, str) else tz
    start = datetime.combine(day, time(0), z)
    end = datetime.combine(day + timedelta(days=1), time(0), z)
    return start.astimezone(UTC), end.astimezone(UTC)


def list_calls(conn, day: date | None = None, tz="Asia/Shanghai", line: str | None = None,
               outcome: str | None = None, limit: int = 200) -> list[dict]:
    q = select(T)
    if day is not None:
        start, end = day_bounds(day, tz)
        q = q.where(and_(T.c.arrived_at >= start, T.c.arrived_at < end))
    if line:
        q = q.where(T.c.line == line)
    if outcome:
        q = q.where(T.c.outcome.is_(None) if outcome == "live" else T.c.outcome == outcome)
    q = q.order_by(T.c.arrived_at.desc()).limit(limit)
    return [row_dict(r) for r in conn.execute(q).all()]


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]      # nearest rank


def line_figures(conn, day: date, tz="Asia/Shanghai") -> dict[str, dict]:
    """Per line for one local day: calls, answered, abandoned, failed, live, valid, invalid,
    unmarked, mean and p90 time to answer (seconds, arrival to answer), the valid-call rate and
    the share of calls from flagged numbers.  The three hotline lines are always present."""
    start, end = day_bounds(day, tz)
    return _figures(conn, start, end)


def month_figures(conn, year: int, month: int, tz="Asia/Shanghai") -> dict[str, dict]:
    """The same figures for a local calendar month."""
    start, _ = day_bounds(date(year, month, 1), tz)
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    end, _ = day_bounds(nxt, tz)
    return _figures(conn, start, end)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _figures(conn, start: datetime, end: datetime) -> dict[str, dict]:
    rows = conn.execute(select(T.c.line, T.c.outcome, T.c.valid, T.c.arrived_at, T.c.answered_at, T.c.caller_flag)
                        .where(and_(T.c.arrived_at >= start, T.c.arrived_at < end))).all()
    figs: dict[str, dict] = {}
    waits: dict[str, list[float]] = {}

    def blank():
        return {"calls": 0, "answered": 0, "abandoned": 0, "abandoned_ivr": 0,
                "abandoned_queue": 0, "failed": 0, "live": 0, "valid": 0, "invalid": 0,
                "unmarked": 0, "answer_mean_s": None, "answer_p90_s": None, "flagged": 0}
    for line in DEFAULT_LINES:
        figs[line] = blank()
        waits[line] = []
    for r in rows:
        f = figs.setdefault(r.line, blank())
        w = waits.setdefault(r.line, [])
        f["calls"] += 1
        if r.outcome is None:
            f["live"] += 1
        elif r.outcome == "answered":
            f["answered"] += 1
        elif r.outcome in ABANDONED:
            f["abandoned"] += 1
            f[r.outcome] += 1
        elif r.outcome == "failed":
            f["failed"] += 1
        if r.valid is True:
            f["valid"] += 1
        elif r.valid is False:
            f["invalid"] += 1
        else:
            f["unmarked"] += 1
        if r.caller_flag:
            f["flagged"] += 1
        if r.answered_at is not None and r.arrived_at is not None:
            w.append((_utc(r.answered_at) - _utc(r.arrived_at)).total_seconds())
    for line, w in waits.items():
        if w:
            figs[line]["answer_mean_s"] = round(sum(w) / len(w), 1)
            figs[line]["answer_p90_s"] = round(_p90(w), 1)
    for f in figs.values():
        f["valid_rate"] = _rate(f["valid"], f["calls"])                       # of all calls
        f["valid_rate_marked"] = _rate(f["valid"], f["valid"] + f["invalid"])  # of the calls marked
        f["flagged_share"] = _rate(f["flagged"], f["calls"])
    return figs


__all__ = ["upsert_call", "open_calls", "mark_call", "mark_callback", "callback_list",
           "line_figures", "month_figures", "list_calls", "get_call", "call_values", "VALID_CATEGORIES",
           "INVALID_CATEGORIES", "day_bounds"]
