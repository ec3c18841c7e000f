"""The nuisance list: numbers dispatchers marked, with a reason and an expiry.

It never blocks a call.  Nothing in the call's path reads it: the dialplan puts every call in
the queue, and the list only changes what the call-takers see (the caller history, the board)
and, for entries with `notice`, which recorded message the overflow point plays.  Every change
is audited.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import and_, insert, or_, select, update

from gateway.storage.schema import audit_log, hotline_nuisance as N

UTC = timezone.utc


def number_key(number: str | None) -> str:
    """One spelling per subscriber: digits only, without the 00 / 86 country prefix, so that
    +86 138..., 0086138... and 138... are the same entry."""
    digits = "".join(ch for ch in (number or "") if ch.isdigit())
    if digits.startswith("00"):
        digits = digits[2:]
    if digits.startswith("86") and len(digits) > 11:
        digits = digits[2:]
    return digits


def _active(now: datetime):
    return and_(N.c.removed_at.is_(None), or_(N.c.expires_at.is_(None), N.c.expires_at > now))


def _entry(r) -> dict:
    d = dict(r._mapping)
    for k in ("added_at", "expires_at", "removed_at"):
        if d.get(k) is not None and d[k].tzinfo is None:
            d[k] = d[k].replace(tzinfo=UTC)
    return d


def add(conn, number: str, reason: str, by: str, now: datetime, expires_at: datetime | None = None,
        notice: bool = False) -> dict:
    """Mark a number (an active entry for the same number is replaced).  ValueError names the field."""
    key = number_key(number)
    reason, by = (reason or "").strip(), (by or "").strip()
    if len(key) < 3:
        raise ValueError(f"number {number!r} has too few digits")
    if not reason:
        raise ValueError("a reason is required")
    if not by:
        raise ValueError("who marks the number is required")
    if expires_at is not None and expires_at <= now:
        raise ValueError("expires_at is in the past")
    before = _close(conn, key, by, now)
    nid = conn.execute(insert(N).values(number=key, reason=reason[:200], notice=bool(notice), added_at=now,
                                        added_by=by[:100], expires_at=expires_at)).inserted_primary_key[0]
    conn.execute(insert(audit_log).values(
        at=now, actor=by[:100], action="hotline.nuisance_add", subject=f"number {key}",
        detail={"reason": reason, "expires_at": expires_at.isoformat() if expires_at else None,
                "notice": bool(notice), "replaced": before}))
    return _entry(conn.execute(select(N).where(N.c.id == nid)).first())


def _close(conn, key: str, by: str, now: datetime) -> list[int]:
    ids = list(conn.execute(select(N.c.id).where(and_(N.c.number == key, _active(now)))).scalars())
    if ids:
        conn.execute(update(N).where(N.c.id.in_(ids)).values(removed_at=now, removed_by=by[:100]))
    return ids


def remove(conn, number: str, by: str, now: datetime) -> int:
    """Take a number off the list; LookupError when it is not on it."""
    key = number_key(number)
    by = (by or "").strip()
    if not by:
        raise ValueError("who removes the number is required")
    ids = _close(conn, key, by, now)
    if not ids:
        raise LookupError(f"number {key or number!r} is not on the nuisance list")
    conn.execute(insert(audit_log).values(at=now, actor=by[:100], action="hotline.nuisance_remove",
                                          subject=f"number {key}", detail={"entries": ids}))
    return len(ids)


def listing(conn, now: datetime, all_: bool = False) -> list[dict]:
    q = select(N).order_by(N.c.added_at.desc())
    if not all_:
        q = q.where(_active(now))
    return [_entry(r) for r in conn.execute(q.limit(1000))]


def active_entry(conn, number: str | None, now: datetime) -> dict | None:
    key = number_key(number)
    if not key:
        return None
    r = conn.execute(select(N.c.reason, N.c.expires_at, N.c.notice, N.c.added_by)
                     .where(and_(N.c.number == key, _active(now))).order_by(N.c.added_at.desc())).first()
    return None if r is None else _entry(r)


def notice_keys(conn, now: datetime) -> set[str]:
    """Numbers (as number_key) whose callers hear the nuisance notice."""
    return set(conn.execute(select(N.c.number).where(and_(_active(now), N.c.notice.is_(True)))).scalars())
