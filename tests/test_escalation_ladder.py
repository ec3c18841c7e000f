"""The whole receipt ladder and the arrival deadline, on a Clock, over the real database."""
from datetime import timedelta

import pytest_twisted
from sqlalchemy import select

from gateway.orders.summary import load_summary_tx, render
from gateway.storage.schema import audit_log, escalation_steps, order_teams
from tests._orders_rig import SUPERVISOR, Rig, local, phone, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)     # a Monday morning: day limits apply


def at(minutes, seconds=0):
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def steps_tx(conn):
    return conn.execute(select(escalation_steps.c.order_team_id, escalation_steps.c.stage, escalation_steps.c.action,
                               escalation_steps.c.state, escalation_steps.c.late, escalation_steps.c.reason)
                        .order_by(escalation_steps.c.id)).all()


@pytest_twisted.inlineCallbacks
def test_whole_receipt_ladder_and_supervisor_alert(database):
    yield database.run(seed_directory_tx, 3)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send()
        code = order.code
        # Every commander and deputy has the order by SMS, with the code and the keys.
        for i in (1, 2, 3):
            for role in ("commander", "deputy"):
                texts = rig.outbox.to(phone(i, role), "order")
                assert len(texts) == 1 and code in texts[0] and "20分钟内到达" in texts[0]
                assert "分管副县长" in texts[0]      # rescue: the deputy county head commands on scene

        # Team 1's DEPUTY answers at 10:01: either commander may answer for the team.
        outcome, _ = yield rig.sms(phone(1, "deputy"), f"{code} 收到", at(1))
        assert outcome.accepted and outcome.message == f"已记录 {code} 收到 10:01"
        assert rig.outbox.to(phone(1, "deputy"), "confirmation") == [f"已记录 {code} 收到 10:01"]

        # 10:03: SMS again to the silent teams' commander and deputy; not to team 1.
        yield rig.advance_to(at(3))
        reminders = rig.outbox.purposes("reminder")
        assert sorted(m["phone"] for m in reminders) == sorted(
            phone(i, r) for i in (2, 3) for r in ("commander", "deputy"))
        assert not rig.caller.calls

        # 10:06: the commanders of the silent teams are called; 10:09 their deputies.
        yield rig.advance_to(at(6))
        assert sorted(c["phone"] for c in rig.caller.calls) == [phone(2, "commander"), phone(3, "commander")]
        yield rig.advance_to(at(9))
        assert sorted(c["phone"] for c in rig.caller.calls[2:]) == [phone(2, "deputy"), phone(3, "deputy")]
        assert rig.outbox.to(SUPERVISOR) == []

        # 10:12: the duty supervisor gets ONE SMS and ONE call naming both silent teams; dispatch an event.
        yield rig.advance_to(at(12))
        sup_sms = rig.outbox.to(SUPERVISOR, "supervisor")
        assert len(sup_sms) == 1 and "第2救援队" in sup_sms[0] and "第3救援队" in sup_sms[0]
        assert "第1救援队" not in sup_sms[0]
        assert len(rig.caller.to(SUPERVISOR, "supervisor")) == 1
        alerts = rig.events.of("order.supervisor_alert")
        assert len(alerts) == 1 and [t["code"] for t in alerts[0]["teams"]] == ["PUB-02", "PUB-03"]

        # Each step is recorded with the reason it fired, none late.
        rows = yield database.run(steps_tx)
        fired = [r for r in rows if r.state == "fired"]
        assert len(fired) == 8 and not any(r.late for r in fired)
        assert all("no receipt from team PUB-0" in r.reason for r in fired)
        cancelled = [r for r in rows if r.state == "cancelled"]
        assert {r.stage for r in cancelled} == {"receipt"} and len(cancelled) == 4   # team 1's receipt ladder

        # The unanswered calls to commander and deputy make the silent teams "unreachable".
        states = yield database.run(lambda c: dict(c.execute(select(order_teams.c.team_id, order_teams.c.state)).all()))
        assert sorted(states.values()) == ["received", "unreachable", "unreachable"]

        # A late answer after the escalation: recorded, the supervisor is told, the ladder stops.
        outcome, _ = yield rig.sms(phone(2, "commander"), f"{code} 2 现场两人被困", at(14))
        assert outcome.accepted and outcome.status == "arrived"
        assert rig.outbox.to(SUPERVISOR, "supervisor")[-1].endswith(f"指令{code} 第2救援队 已反馈 到达 10:14")
        assert rig.events.of("order.feedback")[-1]["after_escalation"] is True

        # 10:20, the arrival deadline: team 1 (received, not arrived) and 3 are chased; team 2 is not.
        n_before = len(rig.outbox.purposes("reminder"))
        yield rig.advance_to(at(20))
        new = rig.outbox.purposes("reminder")[n_before:]
        assert sorted(m["phone"] for m in new) == sorted(phone(i, r) for i in (1, 3) for r in ("commander", "deputy"))
        assert all("到达" in m["text"] for m in new)

        summary = yield database.run(load_summary_tx, code, rig.cfg)
        text = render(summary, rig.cfg)
        lines = {t.team_code: t for t in summary.teams}
        assert lines["PUB-01"].answered_by == "副指挥1 (deputy)" and lines["PUB-01"].took == {"received": 60.0}
        assert lines["PUB-02"].state == "arrived" and lines["PUB-02"].took == {"arrived": 14 * 60.0}
        assert [s.action for s in lines["PUB-03"].steps] == ["sms_again", "call_commander", "call_deputy",
                                                            "supervisor", "sms_again"]
        assert "PUB-03" in text and "10:12 接收报值班长" in text
        audits = yield database.run(lambda c: c.execute(select(audit_log.c.action)).scalars().all())
        assert audits.count("escalation.step") == 10 and "feedback.recorded" in audits
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_answer_stops_only_that_teams_ladder_and_keypad_merges_with_sms(database):
    yield database.run(seed_directory_tx, 2)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01", "PUB-02"), voice=True)
        # The order call goes to commander and deputy of each team.
        assert sorted(c["phone"] for c in rig.caller.calls if c["purpose"] == "order") == sorted(
            phone(i, r) for i in (1, 2) for r in ("commander", "deputy"))
        # Team 1: receipt by SMS from the commander, arrival by keypad from the deputy.
        yield rig.sms(phone(1, "commander"), "1", at(2))
        out = yield rig.keypad(phone(1, "deputy"), "2", order.code, at(15))
        assert out.accepted and out.status == "arrived" and out.message == f"已记录 {order.code} 到达 10:15"
        # A late "收到" by keypad after arrival is kept but does not move the team back.
        out = yield rig.keypad(phone(1, "commander"), "1", order.code, at(16))
        assert out.accepted
        yield rig.advance_to(at(30))
        summary = yield database.run(load_summary_tx, order.code, rig.cfg)
        t1, t2 = summary.teams
        assert t1.state == "arrived" and t1.took == {"received": 120.0, "arrived": 900.0}
        assert t1.steps == []                       # never chased
        assert t2.state != "arrived" and [s.stage for s in t2.steps][:4] == ["receipt"] * 4
        assert [s.stage for s in t2.steps][4:] == ["arrival"] * 4
        # Finished without the report: the form's first field is asked for, and it stays chased at 24 h.
        out, _ = yield rig.sms(phone(1, "commander"), f"{order.code} 3", at(50))
        assert "请补充反馈单【处置结果】" in out.message
        yield rig.advance_to(at(24 * 60))
        assert any("处置结果" in t for t in rig.outbox.to(phone(1, "commander"), "reminder"))
        out, _ = yield rig.sms(phone(1, "deputy"), f"{order.code} 3 道路已抢通 后续：清淤；责任人：王五；单位：白塔镇；伤亡：无",
                               at(24 * 60 + 2))
        assert out.accepted and "请补充" not in out.message
        summary = yield database.run(load_summary_tx, order.code, rig.cfg)
        assert summary.teams[0].report.startswith("道路已抢通") and summary.teams[0].next_step is None
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_team_that_received_but_is_late_to_arrive_is_still_called(database):
    """A call of the arrival ladder stops when the team ARRIVES, not at any answer: "received"
    does not cancel it (the call attempt checks its own step's stage)."""
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",))
        outcome, _ = yield rig.sms(phone(1, "commander"), f"{order.code} 收到", at(1))
        assert outcome.accepted
        yield rig.advance_to(at(24))        # the arrival deadline 10:20; the commander's call is due 10:23
        assert [c["purpose"] for c in rig.caller.to(phone(1, "commander"))] == ["escalation"]
        outcome, _ = yield rig.sms(phone(1, "commander"), f"{order.code} 到达", at(25))
        assert outcome.accepted
        yield rig.advance_to(at(40))        # arrived: the deputy's call (10:26) is not placed
        assert rig.caller.to(phone(1, "deputy")) == []
    finally:
        yield rig.stop()
