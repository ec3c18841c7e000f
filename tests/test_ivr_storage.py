"""The IVR against the real database (SQLite and PostgreSQL): keypresses committed raw before
they are confirmed, deliveries rows of order calls, and a whole order call end to end."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest_twisted
from sqlalchemy import insert, select
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from gateway.interfaces import FeedbackOutcome, IKeypadSink, IOriginator, OriginateResult
from gateway.storage.schema import deliveries, inbound_raw, orders, teams
from ivr.emulator import Press, ScriptedCaller, place_call
from ivr.journal import KeypadEntry, KeypadJournal
from ivr.order_caller import OrderCaller, RetryPolicy
from ivr.orders import OrderBook
from ivr.refusals import RefusalAudit
from ivr.service import make_fastagi_factory
from ivr.token_gate import CallTokenGate
from ivr.tokens import CallTokens

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)
PHONE = "+8613805761234"


def seed(conn):
    conn.execute(insert(teams).values(id=3, code="PUB-03", name="白塔镇综合分队", kind="public", created_at=NOW))
    conn.execute(insert(orders).values(id=1, code="0427", incident_ref="INC-1", kind="rescue",
                                       text="白塔镇山体滑坡，立即集结出发", rule="leaving_city", voice=True,
                                       state="open", created_at=NOW))


def rows(conn, table):
    return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]


@implementer(IKeypadSink)
class CheckingSink:
    """A feedback engine that checks, in a transaction of its own, that the key is committed."""

    def __init__(self, db):
        self.db = db
        self.seen = []

    async def _answer(self, answer):
        raw = await self.db.run(lambda conn: conn.execute(
            select(inbound_raw).where(inbound_raw.c.id == answer.raw_id)).one()._mapping)
        self.seen.append((answer, dict(raw)))
        return FeedbackOutcome(True, "已记录", answer.order_code, "assembled")

    def keypad_answer(self, answer):
        return Deferred.fromCoroutine(self._answer(answer))

    def open_orders_for(self, caller):
        return succeed(["0427"])


@implementer(IOriginator)
class EmulatedPbx:
    """Answers the Originate at once (as OriginateResponse precedes the AGI), then runs the
    emulated order call into the FastAGI server with the channel variables it was given."""

    def __init__(self, reactor, port, moves):
        self.reactor, self.port, self.moves = reactor, port, moves
        self.calls = []

    def originate(self, channel, *, context, exten, priority=1, variables=None, channel_id=None,
                  caller_id=None, timeout_ms=30000):
        self.calls.append(Deferred.fromCoroutine(place_call(
            self.reactor, "127.0.0.1", self.port, f"order?order={variables['ORDER_CODE']}",
            caller=ScriptedCaller(self.moves), variables=variables,
            env={"agi_uniqueid": channel_id, "agi_context": context, "agi_extension": exten})))
        return succeed(OriginateResult(True, 4, uniqueid=channel_id))


async def order_call_end_to_end(database, moves):
    from twisted.internet import reactor
    await database.run(seed)
    sink = CheckingSink(database)
    tokens = CallTokens(b"storage-test-token-key-0123456789")
    refusals = RefusalAudit(reactor, database)
    factory = make_fastagi_factory(reactor, sink=sink, journal=KeypadJournal(reactor, database),
                                   orders=OrderBook(database),
                                   tokens=CallTokenGate(reactor, database, tokens, refusals))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        pbx = EmulatedPbx(reactor, port.getHost().port, moves)
        caller = OrderCaller(reactor, pbx, database, policy=RetryPolicy(delay=0), tokens=tokens)
        outcome = await caller.call_order("0427", PHONE, order_id=1, team_id=3).addTimeout(10, reactor)
        record = await pbx.calls[0].addTimeout(10, reactor)
    finally:
        await port.stopListening()
    return sink, outcome, record


@pytest_twisted.ensureDeferred
async def test_order_call_answer_committed_before_confirmation(database):
    sink, outcome, record = await order_call_end_to_end(database, [Press("4")])
    assert outcome == "answered"
    [(answer, raw)] = sink.seen
    assert (raw["channel"], raw["raw"], raw["state"], raw["sender"]) == ("keypad", b"4", "new", PHONE)
    assert raw["source"] == answer.call_id == "yihu-order-0427-1"
    assert raw["meta"]["order_code"] == "0427" and raw["meta"]["delivery_id"] == 1
    assert "GET DATA yihu/order-menu-assembled 5000 1" in record.commands    # leaving-the-city order
    assert "yihu/status-assembled" in record.played
    [d] = await database.run(rows, deliveries)
    assert (d["channel"], d["state"], d["attempts"]) == ("voice", "answered", 1)


@pytest_twisted.ensureDeferred
async def test_silent_order_call_is_no_answer_in_deliveries(database):
    sink, outcome, record = await order_call_end_to_end(database, [])
    assert outcome == "answered" and sink.seen == []
    [d] = await database.run(rows, deliveries)
    assert d["state"] == "no_answer"
    assert "attempt 1" in d["detail"] and "no answer: no key pressed 2 times" in d["detail"]
    [raw] = await database.run(rows, inbound_raw)
    assert raw["channel"] == "keypad" and raw["raw"] == b"" and "no answer" in raw["note"]


@pytest_twisted.ensureDeferred
async def test_journal_keeps_every_key_raw(database):
    from twisted.internet import reactor
    j = KeypadJournal(reactor, database)
    a = await j.record(KeypadEntry(call_id="c1", caller=PHONE, digits="0431", script="feedback",
                                   state="parsed", order_code="0431", note="order code keyed"))
    b = await j.record(KeypadEntry(call_id="c1", caller=PHONE, digits="*", script="feedback", state="garbage"))
    got = await database.run(rows, inbound_raw)
    assert [r["id"] for r in got] == [a, b]
    assert [(r["raw"], r["state"], r["meta"]["script"]) for r in got] == [
        (b"0431", "parsed", "feedback"), (b"*", "garbage", "feedback")]


@pytest_twisted.ensureDeferred
async def test_order_book_reads_orders_and_the_roster(database):
    from gateway.storage.schema import member_phones, members
    await database.run(seed)

    def phone(conn):
        conn.execute(insert(members).values(id=5, team_id=3, name="王队长", role="commander"))
        conn.execute(insert(member_phones).values(member_id=5, e164=PHONE, rank=0))
    await database.run(phone)
    book = OrderBook(database)
    brief = await book.brief("0427")
    assert brief.leaving_city and brief.text.startswith("白塔镇")
    assert await book.brief("9999") is None
    assert await book.known_phone(PHONE) and not await book.known_phone("+8613900000000")
