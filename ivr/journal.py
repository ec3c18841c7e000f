"""The keypad journal: every keypress that matters, stored raw and committed before the caller
hears it confirmed ("durable before acknowledged"), and the calls that ended without an answer.

KeypadJournal writes `inbound_raw` (channel 'keypad') and, for order calls we placed, the
`deliveries` row of the attempt.  MemoryJournal is the same API in memory, for drills and tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import case, func, insert, update
from twisted.internet.defer import Deferred, succeed

from gateway.cluster.wakeups import notify_tx
from gateway.storage.bulk import insert_returning_ids
from gateway.storage.group import GroupCommit
from gateway.storage.schema import deliveries, inbound_raw


def utc(reactor) -> datetime:
    return datetime.fromtimestamp(reactor.seconds(), tz=timezone.utc)


@dataclass
class KeypadEntry:
    call_id: str
    caller: str | None
    digits: str
    script: str
    state: str                      # new (an answer, for the feedback engine) / parsed / garbage
    order_code: str | None = None
    note: str | None = None
    delivery_id: int | None = None
    received_at: datetime | None = None
    meta: dict = field(default_factory=dict)


class KeypadJournal:
    def __init__(self, reactor, db):
        self.reactor = reactor
        self.db = db
        # Hundreds of calls key their answers within seconds: one commit for those that arrive
        # together (each still told only after its commit).
        self._group = GroupCommit(db, "keypad journal")

    def record(self, entry: KeypadEntry) -> Deferred:
        """Deferred[int]: the inbound_raw id, fired after COMMIT."""
        entry.received_at = entry.received_at or utc(self.reactor)
        return self._group.run(_insert_raw, entry)

    def no_answer(self, entry: KeypadEntry) -> Deferred:
        """Record a call that ended with no usable key; marks the delivery no_answer."""
        entry.received_at = entry.received_at or utc(self.reactor)
        return self._group.run(_insert_no_answer, entry)

    def unit(self, entry: KeypadEntry) -> tuple:
        """What record(entry) runs, as a unit of work (fn, args) for a transaction of another
        owner on the same database (gateway.storage.group.run_units): its result is the
        inbound_raw id, committed with that transaction."""
        entry.received_at = entry.received_at or utc(self.reactor)
        return _insert_raw, (entry,)


def _raw_row(e: KeypadEntry) -> dict:
    meta = {"script": e.script, "order_code": e.order_code, **e.meta}
    if e.delivery_id is not None:
        meta["delivery_id"] = e.delivery_id
    return dict(channel="keypad", source=e.call_id[:200], sender=(e.caller or "")[:40] or None,
                raw=e.digits.encode("ascii", "replace"), text=e.digits, received_at=e.received_at,
                state=e.state, note=e.note, meta=meta)


def _insert_raw(conn, e: KeypadEntry) -> int:
    notify_tx(conn, "reply")
    r = conn.execute(insert(inbound_raw).values(**_raw_row(e)))
    return int(r.inserted_primary_key[0])


def _insert_raws(conn, units) -> list[int]:
    """_insert_raw for a group commit's batch [(entry,)]: one insert for all."""
    notify_tx(conn, "reply")
    return [int(i) for i in insert_returning_ids(conn, inbound_raw, [_raw_row(e) for (e,) in units])]


_insert_raw.many = _insert_raws


def _insert_no_answer(conn, e: KeypadEntry) -> int:
    raw_id = _insert_raw(conn, e)
    if e.delivery_id is not None:
        conn.execute(update(deliveries).where(deliveries.c.id == e.delivery_id).values(
            state="no_answer", detail=appended_detail(e.note or "no answer"), updated_at=e.received_at))
    return raw_id


def appended_detail(line: str, column=None):
    """deliveries.detail (or `column`) with one more line, computed in the UPDATE itself: the order
    caller and the order flow may write the same row at the same moment, and neither may lose the
    other's."""
    current = func.coalesce(deliveries.c.detail if column is None else column, "")
    return case((current == "", line), else_=current + "\n" + line)


class MemoryJournal:
    """In-memory journal (drill mode, tests, bench): same calls, ids from 1."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.entries: list[KeypadEntry] = []
        self.no_answers: list[KeypadEntry] = []

    def record(self, entry: KeypadEntry) -> Deferred:
        entry.received_at = entry.received_at or utc(self.reactor)
        self.entries.append(entry)
        return succeed(len(self.entries))

    def no_answer(self, entry: KeypadEntry) -> Deferred:
        self.no_answers.append(entry)
        return self.record(entry)


def unjudged_keypad_tx(conn) -> list[dict]:
    """Keypad answers committed raw (state new) that the feedback engine never judged: the gateway
    stopped in between.  Handed to it again at start; it ignores one it has judged already."""
    from sqlalchemy import select
    ir = inbound_raw
    return [dict(r) for r in conn.execute(select(ir.c.id, ir.c.sender, ir.c.text, ir.c.source, ir.c.received_at,
                                                 ir.c.meta)
                                          .where(ir.c.channel == "keypad", ir.c.state == "new")
                                          .order_by(ir.c.id)).mappings()]


async def resume_unjudged_keypad(db, sink) -> int:
    from gateway.interfaces import KeypadAnswer
    rows = await db.run(unjudged_keypad_tx)
    for r in rows:
        meta = r.get("meta") or {}
        await sink.keypad_answer(KeypadAnswer(raw_id=r["id"], caller=r.get("sender") or "", digit=r.get("text") or "",
                                              call_id=r.get("source") or "", received_at=r["received_at"],
                                              order_code=meta.get("order_code")))
    return len(rows)
