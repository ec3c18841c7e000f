"""Replies that are refused, ambiguous, garbage, duplicated or declining: kept raw, audited, answered."""
from datetime import timedelta

import pytest_twisted
from sqlalchemy import func, select

from gateway.interfaces import InboundSms
from gateway.storage.schema import audit_log, feedback, order_teams
from tests._orders_rig import Rig, local, phone, raw_state_tx, raw_tx, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)
SPOOFER = "+8613100000000"


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def team_states_tx(conn):
    return [r.state for r in conn.execute(select(order_teams.c.state).order_by(order_teams.c.id))]


def audits_tx(conn, action):
    return conn.execute(select(audit_log.c.actor, audit_log.c.detail).where(audit_log.c.action == action)).all()


@pytest_twisted.inlineCallbacks
def test_spoofed_reply_is_refused_kept_raw_audited_and_the_chase_goes_on(database):
    yield database.run(seed_directory_tx, 3)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01", "PUB-02"))
        # A number not on the roster claims team 1 has arrived.
        out, raw_id = yield rig.sms(SPOOFER, f"{order.code} 2", at(1))
        assert not out.accepted
        raw = yield database.run(raw_state_tx, raw_id)
        assert raw.state == "refused" and "not on the roster" in raw.note
        assert rig.outbox.to(SPOOFER) == []                      # we never talk to a spoofer
        audits = yield database.run(audits_tx, "feedback.refused")
        assert audits[0].actor == f"sms:{SPOOFER}" and audits[0].detail["text"] == f"{order.code} 2"
        # Team 3 is on the roster but the order is not theirs.
        out, raw_id = yield rig.sms(phone(3, "commander"), f"{order.code} 2", at(1))
        assert not out.accepted
        assert (yield database.run(raw_state_tx, raw_id)).state == "refused"
        assert "不是发给贵队的" in rig.outbox.to(phone(3, "commander"))[0]
        assert (yield database.run(team_states_tx)) == ["sent", "sent"]
        yield rig.advance_to(at(3))
        assert len(rig.outbox.to(phone(1, "commander"), "reminder")) == 1   # still chased
        assert rig.events.of("order.feedback") == []
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_ambiguous_reply_asks_for_the_code(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        a = yield rig.send(teams_=("PUB-01",))
        b = yield rig.send(teams_=("PUB-01",))
        assert a.code != b.code
        out, raw_id = yield rig.sms(phone(1, "commander"), "到达", at(5))
        assert not out.accepted and out.needs_code
        msg = rig.outbox.to(phone(1, "commander"), "reply_help")[-1]
        assert a.code in msg and b.code in msg
        assert (yield database.run(raw_state_tx, raw_id)).note.startswith("ambiguous")
        out, _ = yield rig.sms(phone(1, "commander"), f"{b.code}，２", at(6))
        assert out.accepted and out.order_code == b.code and out.status == "arrived"
        codes = yield rig.feedback.open_orders_for(phone(1, "deputy"))
        assert sorted(codes) == sorted([a.code, b.code])
        assert (yield rig.feedback.open_orders_for(SPOOFER)) == []
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_garbage_gets_help_assembled_not_applicable_and_duplicates_are_ignored(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",))
        out, raw_id = yield rig.sms(phone(1, "commander"), "还没到，路上堵", at(1))
        assert not out.accepted and (yield database.run(raw_state_tx, raw_id)).state == "garbage"
        assert "未能识别" in rig.outbox.to(phone(1, "commander"), "reply_help")[-1]
        out, raw_id = yield rig.sms(phone(1, "commander"), f"{order.code} 4", at(2))
        assert not out.accepted and "无需集结" in out.message
        # The SMS layer hands the same committed SMS twice (a restart): recorded once, answered once.
        raw_id = yield database.run(raw_tx, "sms", phone(1, "deputy"), "1", at(2))
        sms = InboundSms(raw_id, phone(1, "deputy"), "1", at(2), "modem0")
        first = yield rig.feedback.sms_received(sms)
        second = yield rig.feedback.sms_received(sms)
        assert first.accepted and not second.accepted
        n = yield database.run(lambda c: c.execute(select(func.count()).select_from(feedback)).scalar())
        assert n == 1 and len(rig.outbox.to(phone(1, "deputy"), "confirmation")) == 1
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_declined_with_reason_stops_the_ladder_and_tells_dispatch(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",))
        out, _ = yield rig.sms(phone(1, "commander"), f"{order.code} 无法前往 道路塌方", at(1))
        assert out.accepted and out.status == "declined"
        ev = rig.events.of("order.feedback")[-1]
        assert ev["status"] == "declined" and ev["report"] == "道路塌方" and ev["team"] == "PUB-01"
        yield rig.advance_to(at(40))
        assert rig.outbox.to(phone(1, "commander"), "reminder") == [] and rig.caller.calls == []
        from gateway.orders.summary import load_summary_tx
        s = yield database.run(load_summary_tx, order.code, rig.cfg)
        assert s.teams[0].state == "declined" and s.teams[0].reason == "道路塌方"
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_burst_of_replies_is_group_committed_and_one_bad_answer_sinks_none(database):
    from twisted.internet import defer
    yield database.run(seed_directory_tx, 10)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=tuple(f"PUB-{i:02d}" for i in range(1, 11)))
        raw_ids = []
        for i in range(1, 11):
            raw_ids.append((yield database.run(raw_tx, "sms", phone(i, "commander"), f"{order.code} 1", at(1))))
        sms = [InboundSms(r, phone(i + 1, "commander"), f"{order.code} 1", at(1), "m") for i, r in enumerate(raw_ids)]
        # One answer names a raw record that does not exist: its insert fails inside the batch.
        sms[4] = InboundSms(999999, sms[4].sender, sms[4].text, at(1), "m")
        results = yield defer.DeferredList([rig.feedback.sms_received(s) for s in sms], consumeErrors=True)
        ok = [r for good, r in results if good]
        assert [good for good, _ in results].count(False) == 1 and all(o.accepted for o in ok) and len(ok) == 9
        assert (yield database.run(team_states_tx)).count("received") == 9
        assert len(rig.outbox.purposes("confirmation")) == 9
    finally:
        rig.stop()
