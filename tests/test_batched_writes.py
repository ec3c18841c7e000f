"""Work that arrives together is written together (few statements, one commit), and each caller
still gets exactly what it would have got alone: messages staged at once, inbound records with
their duplicate check, the call tokens' first uses, the orders read out, the escalation's claim."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest_twisted
from sqlalchemy import insert, select
from twisted.internet import defer, reactor

from gateway.storage.schema import call_tokens_used, escalation_steps, inbound_raw, sms_messages, sms_segments
from ivr.refusals import RefusalAudit
from ivr.token_gate import CallTokenGate
from ivr.tokens import CallTokens
from sms.store import SqlStore, add_message_tx, add_messages_tx
from tests._orders_rig import Rig, local, seed_directory_tx
from tests.secrets import CALL_TOKEN_KEY

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
LONG = "请各队立即集结，" * 30          # several parts: its concatenation reference is its own id


def _outbox_rows_tx(conn, ids):
    out = []
    for mid in ids:
        m = conn.execute(select(sms_messages).where(sms_messages.c.id == mid)).mappings().one()
        segs = conn.execute(select(sms_segments.c.seq, sms_segments.c.pdu, sms_segments.c.tpdu_length,
                                   sms_segments.c.state).where(sms_segments.c.message_id == mid)
                            .order_by(sms_segments.c.seq)).all()
        out.append((m["phone"], m["text"], m["purpose"], m["order_id"], m["state"], m["encoding"], m["parts"],
                    m["concat_ref"] is None, [tuple(s) for s in segs]))
    return out


@pytest_twisted.inlineCallbacks
def test_messages_staged_together_are_the_rows_staged_one_by_one(database):
    items = [dict(now=NOW, phone="+8613800000001", text="已收到 0427 到达", purpose="confirmation", order_id=None),
             dict(now=NOW, phone="+8613800000002", text=LONG, purpose="reminder", order_id=None),
             dict(now=NOW, phone="+8613800000003", text="OK 0427", purpose="reply_help", order_id=None)]
    together = yield database.run(add_messages_tx, items)
    alone = yield database.run(lambda c: [add_message_tx(c, it["now"], it["phone"], it["text"], it["purpose"], None, None)
                                          for it in items])
    # the records in the items' order, each with its own segments (what the bank adopts)
    assert [r["phone"] for r in together] == [it["phone"] for it in items]
    assert [r["parts"] for r in together] == [r["parts"] for r in alone] and together[1]["parts"] > 1
    assert len({s["id"] for r in together for s in r["segments"]}) == sum(r["parts"] for r in together)
    rows_together = yield database.run(_outbox_rows_tx, [r["id"] for r in together])
    rows_alone = yield database.run(_outbox_rows_tx, [r["id"] for r in alone])
    # the long one's PDUs carry its own id as reference: equal but for that
    assert [r[:8] for r in rows_together] == [r[:8] for r in rows_alone]
    assert rows_together[0][8] == rows_alone[0][8] and rows_together[2][8] == rows_alone[2][8]
    assert [r["segments"][0]["pdu"] for r in together] == [r[8][0][1] for r in rows_together]


PDU_A = b"07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"
PDU_B = PDU_A[:-2] + b"00"


@pytest_twisted.inlineCallbacks
def test_inbound_records_arriving_together_are_each_kept_once(database):
    store = SqlStore(database)

    def keep(raw, source="/dev/ttyUSB0", channel="sms"):
        return store.store_inbound(reactor.seconds(), channel=channel, source=source, sender="+31641600986",
                                   raw=raw, text="How are you?", state="new")
    first = yield keep(PDU_A)             # alone: committed before the others arrive
    got = yield defer.gatherResults([keep(PDU_A), keep(PDU_B), keep(PDU_B), keep(PDU_A, "/dev/ttyUSB1"),
                                     keep(b"1", "call-1", "keypad"), keep(b"1", "call-1", "keypad")])
    a, dup = first
    assert dup is None
    assert got[0] == (a, a)                                   # read again from the SIM: the first one
    b = got[1][0]
    assert got[1][1] is None and got[2] == (b, b)             # twice in the same batch: kept once
    assert got[3][1] is None and len({a, b, got[3][0], got[4][0], got[5][0]}) == 5
    assert got[4][1] is None and got[5][1] is None            # keypad rows are never duplicates
    rows = yield database.run(lambda c: c.execute(select(inbound_raw.c.id, inbound_raw.c.source, inbound_raw.c.raw)
                                                  .order_by(inbound_raw.c.id)).all())
    assert [(r.source, bytes(r.raw)) for r in rows] == [
        ("/dev/ttyUSB0", PDU_A), ("/dev/ttyUSB0", PDU_B), ("/dev/ttyUSB1", PDU_A), ("call-1", b"1"), ("call-1", b"1")]


@pytest_twisted.inlineCallbacks
def test_call_tokens_presented_at_once_each_work_once(database):
    tokens = CallTokens(CALL_TOKEN_KEY)
    gate = CallTokenGate(reactor, database, tokens, RefusalAudit(reactor, database))
    transactions = []
    real_run = database.run

    def counting_run(fn, *args):
        transactions.append(fn)
        return real_run(fn, *args)
    database.run = counting_run
    try:
        now = reactor.seconds()
        phones = [f"+86138{i:08d}" for i in range(30)]
        minted = [tokens.variables(str(100 + i), p, now, 30)["YIHU_TOKEN"] for i, p in enumerate(phones)]

        def admit(i, token):
            return defer.Deferred.fromCoroutine(gate.admit(call_id=f"call-{i}", order_code="0427", token=token,
                                                           delivery=str(100 + i), phone=phones[i]))
        # 30 calls answered at once, and the first token presented twice at the same moment
        results = yield defer.gatherResults([admit(i, t) for i, t in enumerate(minted)] + [admit(0, minted[0])])
    finally:
        database.run = real_run
    assert results[:30] == [True] * 30 and results[30] is False
    assert len([f for f in transactions if "token" in getattr(f, "__qualname__", "") or f.__name__ == "_all"]) < 30
    used = yield database.run(lambda c: c.execute(select(call_tokens_used.c.delivery_id)).scalars().all())
    assert sorted(used) == list(range(100, 130))


@pytest_twisted.inlineCallbacks
def test_orders_asked_for_together_are_read_in_one_go_each_its_own(database):
    from ivr.orders import OrderBook
    yield database.run(seed_directory_tx, 2)
    rig = Rig(database, local(2026, 3, 2, 10, 0))
    yield rig.start()
    try:
        one = yield rig.send(teams_=("PUB-01",))
        two = yield rig.send(teams_=("PUB-02",))
        book = OrderBook(database)
        reads = []
        real_run = database.run

        def counting_run(fn, *args):
            reads.append(fn)
            return real_run(fn, *args)
        database.run = counting_run
        try:
            briefs = yield defer.gatherResults([book.brief(c) for c in (one.code, two.code, "9999", one.code)])
        finally:
            database.run = real_run
        assert [b.code if b else None for b in briefs] == [one.code, two.code, None, one.code]
        texts = yield database.run(lambda c: dict(c.exec_driver_sql("SELECT code, text FROM orders").all()))
        assert briefs[0].text == texts[one.code] and briefs[1].text == texts[two.code]
        assert len(reads) == 2          # the first alone, the three asked meanwhile together
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_claim_fires_only_the_steps_still_pending(database):
    from gateway.escalation.store import _claim_steps
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, local(2026, 3, 2, 10, 0))
    yield rig.start()
    try:
        yield rig.send(teams_=("PUB-01",))
        ids = yield database.run(lambda c: c.execute(select(escalation_steps.c.id).where(
            escalation_steps.c.state == "pending").order_by(escalation_steps.c.id)).scalars().all())
        assert len(ids) >= 3
        # another claim (the auditor's, another node's) took the first; a reply cancelled the second
        yield database.run(lambda c: c.execute(escalation_steps.update().where(escalation_steps.c.id == ids[0])
                                               .values(state="fired")))
        yield database.run(lambda c: c.execute(escalation_steps.update().where(escalation_steps.c.id == ids[1])
                                               .values(state="cancelled")))
        got = yield database.run(_claim_steps, ids, NOW + timedelta(hours=1))
        assert got == set(ids[2:])
        states = yield database.run(lambda c: dict(c.execute(select(escalation_steps.c.id, escalation_steps.c.state)
                                                             .where(escalation_steps.c.id.in_(ids))).all()))
        assert [states[i] for i in ids[:2]] == ["fired", "cancelled"]
        assert {states[i] for i in ids[2:]} == {"firing"}
    finally:
        rig.stop()
