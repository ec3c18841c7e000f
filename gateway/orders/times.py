"""Time helpers: the domain's "now" comes from an injected IReactorTime; the DB keeps UTC."""
from __future__ import annotations

from datetime import datetime, timezone


def from_seconds(s: float) -> datetime:
    return datetime.fromtimestamp(s, timezone.utc)


def utc(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: everything we store is UTC, so say so."""
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def now(clock) -> datetime:
    return from_seconds(clock.seconds())
