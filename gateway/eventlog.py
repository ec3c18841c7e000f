"""The event log: every event dispatch software sees, as a row committed with what it reports.

A store that changes state calls ``record_event(conn, kind, payload)`` inside the same
transaction, so the change and its event commit together or not at all; the in-memory tail
(adapters/events.py) is woken after the commit and reads the log.  Ids come from the database
(a sequence on PostgreSQL, AUTOINCREMENT on SQLite) and never repeat, across restarts, sweeps
and nodes.  `build_event` is the one place an event's fields are put together, its `"drill"`
flag included: true when the Database that runs the transaction belongs to a gateway in drill mode
(it says so in the connection's info for the transaction, `begin_recording`), or when the event is
about a drill order (its `orders.drill` column, read in the same transaction).

Reading in id order without losing a late commit (PostgreSQL)
-------------------------------------------------------------
Two transactions can take ids 10 and 11 and commit 11 first.  A reader that delivered 11 and
moved its cursor past it would never see 10.  So a reader moves only up to a *horizon*: an id
below which every id is final (committed and visible, or never to be committed).
- A writer takes a shared advisory lock (one key per event_log table) BEFORE it takes an event
  id, and holds it until its transaction ends.  Writers never wait for one another or for readers.
- A reader notes L, the sequence's last issued id, THEN the transactions holding that lock
  (pg_locks, W).  Every writer that took an id <= L took the lock before, so it is in W or has
  ended.  Once no transaction of W holds the lock any more, every id <= L is final: the tail
  keeps (L, W) pairs and checks them on every read, and reads rows (a snapshot taken after that
  check, so every ended writer's rows are visible) only up to the highest resolved L.
The cost: an event waits while a transaction that took an event id before it is still open
(milliseconds normally; a session left idle in a transaction holds the stream back, which
`yihu_events_held_seconds` shows).  SQLite has one writer at a time, so ids commit in order and
every visible row is final.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property

from sqlalchemy import delete, func, insert, select, text

from gateway.mode import mark_drill
from gateway.storage.bulk import among, bulk_insert, insert_numbered
from gateway.storage.schema import event_log, orders

UTC = timezone.utc
LOCK_CLASS = 0x59494855 & 0x7FFFFFFF        # "YIHU": the advisory lock of event-id takers
_LOCK_OBJ = "('event_log'::regclass::oid::bigint % 2147483647)::int"   # one per schema's log
_LOCKED = f"(SELECT pg_advisory_xact_lock_shared({LOCK_CLASS}, {_LOCK_OBJ})::text) IS NOT NULL"
PENDING_KEY = "yihu.events"          # conn.info: events recorded in the open transaction
DRILL_KEY = "yihu.drill"             # conn.info: the Database runs a drill (gateway.mode): every event says so


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    at: str               # ISO 8601 UTC, milliseconds
    payload: dict

    def as_dict(self) -> dict:          # "seq": the name the JSON has always used for the id
        return {"seq": self.id, "kind": self.kind, "at": self.at, "payload": self.payload}

    @cached_property
    def body(self) -> bytes:
        """The JSON every webhook and stream client gets (encoded once per event)."""
        return json.dumps(self.as_dict(), ensure_ascii=False).encode()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def build_event(kind: str, payload: dict, at: datetime, *, drill_mode: bool = False,
                drill_orders: frozenset = frozenset()) -> dict:
    """The one place an event's fields are made (the log row, before its id).  Its payload says
    `"drill"`: true in drill mode and for anything about a drill order (`drill_orders`, or the
    payload saying so already), false otherwise, so no subscriber takes a drill for the county."""
    drill = drill_mode or payload.get("order_id") in drill_orders
    return {"kind": kind, "at": at, "payload": mark_drill(payload, drill)}


def _drill_orders(conn, events: list[tuple]) -> frozenset:
    """Which of the orders these events are about are drill orders: read in the same transaction
    (one query), so an event written by any process (the CLI, another node) is labelled alike."""
    ids = {e[1]["order_id"] for e in events if isinstance(e[1].get("order_id"), int) and "drill" not in e[1]}
    if not ids:
        return frozenset()
    return frozenset(conn.execute(select(orders.c.id).where(among(conn, orders.c.id, ids), orders.c.drill.is_(True)))
                     .scalars())


def record_event(conn, kind: str, payload: dict, at: datetime | None = None) -> int:
    """Append one event in the caller's transaction; returns its id."""
    return record_events(conn, [(kind, payload)], at)[0]


def record_events(conn, events: list[tuple], at: datetime | None = None, *, ids_unread: bool = False) -> list[int]:
    """Append events in the caller's transaction: (kind, payload) at `at`, or (kind, payload,
    its own at) for a batch of things that happened at different times.  ids_unread: the caller
    does not read the ids (none returned), so on PostgreSQL inside bulk.together the events go
    with the held writes, their ids drawn as they go in: no round trip of their own."""
    if not events:
        return []
    at = at or datetime.now(UTC)
    drill_mode = bool(conn.info.get(DRILL_KEY))
    drill_orders = frozenset() if drill_mode else _drill_orders(conn, events)
    rows = [build_event(e[0], e[1], e[2] if len(e) > 2 else at, drill_mode=drill_mode, drill_orders=drill_orders)
            for e in events]
    pending = conn.info.get(PENDING_KEY)       # set by Database for its units of work
    if ids_unread and conn.dialect.name == "postgresql":
        def numbered(ids):
            if pending is not None:
                pending.extend(Event(id_, r["kind"], _iso(r["at"]), r["payload"]) for id_, r in zip(ids, rows))
        # The lock before the ids, as below (the condition is an InitPlan, run once before the rows).
        insert_numbered(conn, event_log, rows, "event_log_id_seq", numbered, only_if=_LOCKED)
        return []
    if conn.dialect.name == "postgresql":
        # The lock first (an InitPlan, run once before the rows): see the module's docstring.
        ids = conn.execute(text(f"SELECT nextval('event_log_id_seq') FROM generate_series(1, :n) WHERE {_LOCKED}"),
                           {"n": len(rows)}).scalars().all()
        for row, id_ in zip(rows, ids):
            row["id"] = id_
        bulk_insert(conn, event_log, rows)
    else:
        ids = [conn.execute(insert(event_log).values(**row)).inserted_primary_key[0] for row in rows]
    if pending is not None:
        pending.extend(Event(id_, r["kind"], _iso(r["at"]), r["payload"]) for id_, r in zip(ids, rows))
    return ids


def _event(r) -> Event:
    at = r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)
    return Event(int(r.id), r.kind, _iso(at), r.payload)


@dataclass
class Horizon:
    """A reader's knowledge of which ids are final (kept by the tail between reads)."""
    final: int | None = None                                # every id <= final is final
    checks: list[tuple[int, frozenset, float]] = field(default_factory=list)   # (L, writers then, when)

    MAX_CHECKS = 64


@dataclass(frozen=True)
class Batch:
    events: list[Event]
    horizon: Horizon
    held: bool             # ids above the horizon wait for open transactions: look again shortly

    @property
    def held_since(self) -> float | None:
        return min((c[2] for c in self.horizon.checks), default=None)


def _advance(conn, h: Horizon, now: float) -> Horizon:
    if conn.dialect.name != "postgresql":
        top = conn.execute(select(func.max(event_log.c.id))).scalar()
        return Horizon(int(top or 0))
    last, called = conn.execute(text("SELECT last_value, is_called FROM event_log_id_seq")).one()
    issued = int(last) if called else 0
    writers = frozenset(conn.execute(text(
        "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        f"AND classid = {LOCK_CLASS} AND objid = ({_LOCK_OBJ})::oid AND objsubid = 2")).scalars())
    final, checks = h.final, []
    for l, w, since in h.checks + [(issued, writers, now)]:
        if w & writers:
            checks.append((l, w, since))
        else:
            final = l if final is None else max(final, l)
    while len(checks) > Horizon.MAX_CHECKS:       # merging two checks only delays the newer
        (l1, w1, s1), (l2, w2, _) = checks[-2:]
        checks[-2:] = [(max(l1, l2), w1 | w2, s1)]
    return Horizon(final, checks)


def read_final(conn, after: int | None, horizon: Horizon, now: float, limit: int = 500) -> Batch:
    """Advance the horizon, then the events with after < id <= horizon, in id order.
    after=None: only the horizon (where a new tail starts).  `now`: the reader's clock."""
    h = _advance(conn, horizon, now)
    events = [] if after is None or h.final is None else read_range(conn, after, h.final, limit)
    return Batch(events, h, bool(h.checks))


def read_range(conn, after: int, upto: int, limit: int = 500) -> list[Event]:
    """Events with after < id <= upto (ids known final), in id order."""
    rows = conn.execute(select(event_log.c.id, event_log.c.kind, event_log.c.at, event_log.c.payload)
                        .where(event_log.c.id > after, event_log.c.id <= upto)
                        .order_by(event_log.c.id).limit(limit)).all()
    return [_event(r) for r in rows]


def last_id(conn) -> int:
    """The highest id committed (where a new subscriber starts)."""
    return int(conn.execute(select(func.max(event_log.c.id))).scalar() or 0)


def count_range(conn, after: int, upto: int) -> int:
    return conn.execute(select(func.count()).select_from(event_log)
                        .where(event_log.c.id > after, event_log.c.id <= upto)).scalar_one()


def sweep_tx(conn, now: datetime, keep: timedelta) -> int:
    """Delete events older than `keep` (retention); returns how many."""
    return conn.execute(delete(event_log).where(event_log.c.at < now - keep)).rowcount


def begin_recording(conn, drill: bool = False) -> list[Event]:
    """Collect the events the transaction records (the list is filled by record_events); `drill`:
    the Database belongs to a gateway in drill mode, so every event it records says so."""
    recorded: list[Event] = []
    conn.info[PENDING_KEY] = recorded
    conn.info[DRILL_KEY] = drill
    return recorded


def end_recording(conn) -> None:
    conn.info.pop(PENDING_KEY, None)
    conn.info.pop(DRILL_KEY, None)
