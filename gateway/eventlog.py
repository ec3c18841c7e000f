"""The event log: every event dispatch software sees, as a row committed with what it reports.

A store that changes state calls ``record_event(conn, kind, payload)`` inside the same
transaction, so the change and its event commit together or not at all; the in-memory tail
(adapters/events.py) is woken after the commit and reads the log.  Ids come from the database
(a sequence on PostgreSQL, AUTOINCREMENT on SQLite) and never repeat, across restarts, sweeps
and nodes.  `build_event` is the one place an event's fields are put together.

Reading in id order without losing a late commit (PostgreSQL)
-----------------------------------------------------------
Two transactions can take ids 10 and 11 and commit 11 first.  A reader that delivered 11 and
moved its cursor past it would never see 10.  So every row also keeps ``xhw``: the first
transaction id not yet assigned when its id was taken (``pg_snapshot_xmax`` of a snapshot taken
after ``nextval``), and a writer always holds a transaction id before it takes an event id.  A
reader, in one statement, sees the rows after its cursor and its snapshot's ``xmin`` (every
transaction below it has ended).  A row is *final* when ``xhw <= xmin``: every transaction that
could have taken a lower id had its transaction id before ``xhw``, so it has ended, and its rows,
if committed, are visible to this same snapshot.  Readers deliver the final prefix in id order
and stop at the first row that is not final; they look again shortly.  The cost: an event waits
while any write transaction older than its id is still open (milliseconds normally; a session
left idle in a transaction holds the stream, which `yihu_events_held_seconds` shows).
SQLite has one writer at a time, so ids commit in order and every visible row is final.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, insert, select, text

from gateway.storage.schema import event_log

UTC = timezone.utc
PENDING_KEY = "yihu.events"          # conn.info: events recorded in the open transaction


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    at: str               # ISO 8601 UTC, milliseconds
    payload: dict

    @property
    def seq(self) -> int:          # the name the JSON has always used for the event's number
        return self.id

    def as_dict(self) -> dict:
        return {"seq": self.id, "kind": self.kind, "at": self.at, "payload": self.payload}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def build_event(kind: str, payload: dict, at: datetime) -> dict:
    """The one place an event's fields are made (the log row, before its id)."""
    return {"kind": kind, "at": at, "payload": dict(payload)}


def record_event(conn, kind: str, payload: dict, at: datetime | None = None) -> int:
    """Append one event in the caller's transaction; returns its id."""
    return record_events(conn, [(kind, payload)], at)[0]


def record_events(conn, events: list[tuple[str, dict]], at: datetime | None = None) -> list[int]:
    if not events:
        return []
    at = at or datetime.now(UTC)
    rows = [build_event(kind, payload, at) for kind, payload in events]
    if conn.dialect.name == "postgresql":
        # Hold a transaction id BEFORE taking event ids (the InitPlan runs once, first), then
        # record the xid horizon in a later statement: see the module's docstring.
        ids = conn.execute(text("SELECT nextval('event_log_id_seq') FROM generate_series(1, :n) "
                                "WHERE (SELECT pg_current_xact_id()) IS NOT NULL"), {"n": len(rows)}).scalars().all()
        for row, id_ in zip(rows, ids):
            row["id"] = id_
        conn.execute(insert(event_log).values(
            xhw=text("pg_snapshot_xmax(pg_current_snapshot())::text::bigint")), rows)
    else:
        ids = [conn.execute(insert(event_log).values(**row)).inserted_primary_key[0] for row in rows]
    pending = conn.info.get(PENDING_KEY)       # set by Database for its units of work
    if pending is not None:
        pending.extend(Event(id_, r["kind"], _iso(r["at"]), r["payload"]) for id_, r in zip(ids, rows))
    return ids


def _event(r) -> Event:
    at = r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)
    return Event(int(r.id), r.kind, _iso(at), r.payload)


@dataclass(frozen=True)
class Batch:
    events: list[Event]
    held: bool             # rows after these exist but are not final yet: look again shortly


def read_final(conn, after: int, limit: int = 500) -> Batch:
    """Events after `after` in id order, as far as every lower id is final."""
    cols = [event_log.c.id, event_log.c.kind, event_log.c.at, event_log.c.payload]
    pg = conn.dialect.name == "postgresql"
    if pg:
        cols += [event_log.c.xhw,
                 text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon")]
    rows = conn.execute(select(*cols).where(event_log.c.id > after).order_by(event_log.c.id).limit(limit)).all()
    out = []
    for r in rows:
        if pg and r.xhw is not None and r.xhw > r.horizon:
            return Batch(out, True)
        out.append(_event(r))
    return Batch(out, False)


def read_range(conn, after: int, upto: int, limit: int = 500) -> list[Event]:
    """Events with after < id <= upto (ids known final), in id order."""
    rows = conn.execute(select(event_log.c.id, event_log.c.kind, event_log.c.at, event_log.c.payload)
                        .where(event_log.c.id > after, event_log.c.id <= upto)
                        .order_by(event_log.c.id).limit(limit)).all()
    return [_event(r) for r in rows]


def final_head(conn) -> int:
    """The highest id below which everything is final (where a new tail starts)."""
    if conn.dialect.name == "postgresql":
        v = conn.execute(text("SELECT id FROM event_log WHERE xhw IS NULL "
                              "OR xhw <= pg_snapshot_xmin(pg_current_snapshot())::text::bigint "
                              "ORDER BY id DESC LIMIT 1")).scalar()
    else:
        v = conn.execute(select(func.max(event_log.c.id))).scalar()
    return int(v or 0)


def count_range(conn, after: int, upto: int) -> int:
    return conn.execute(select(func.count()).select_from(event_log)
                        .where(event_log.c.id > after, event_log.c.id <= upto)).scalar_one()


def sweep_tx(conn, now: datetime, keep: timedelta) -> int:
    """Delete events older than `keep` (retention); returns how many."""
    return conn.execute(delete(event_log).where(event_log.c.at < now - keep)).rowcount


def begin_recording(conn) -> list[Event]:
    """Collect the events the transaction records (the list is filled by record_events)."""
    recorded: list[Event] = []
    conn.info[PENDING_KEY] = recorded
    return recorded


def end_recording(conn) -> None:
    conn.info.pop(PENDING_KEY, None)
