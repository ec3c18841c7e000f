"""Day and night limits: an order at 19:59 and at 20:01 when night starts at 20:00."""
from datetime import timedelta

import pytest
import pytest_twisted

from gateway.escalation.config import EscalationConfig
from gateway.escalation.deadlines import (ARRIVAL, ASSEMBLY, LEAVING_CITY, RECEIPT, REPORT, SAME_TOWNSHIP, is_night,
                                          plan_steps, response_minutes, stage_deadlines)
from tests._orders_rig import Rig, local, phone, seed_directory_tx

NIGHT_AT_20 = EscalationConfig(night_starts="20:00", day_starts="08:00")


@pytest.mark.parametrize("hh,mm,night", [(19, 59, False), (20, 0, True), (20, 1, True), (7, 59, True),
                                         (8, 0, False), (0, 0, True), (12, 0, False)])
def test_night_edges(hh, mm, night):
    assert is_night(local(2026, 6, 1, hh, mm), NIGHT_AT_20) is night


def test_default_night_is_22_to_06_shanghai_time():
    cfg = EscalationConfig()
    assert not is_night(local(2026, 6, 1, 21, 59), cfg) and is_night(local(2026, 6, 1, 22, 0), cfg)
    assert is_night(local(2026, 6, 1, 5, 59), cfg) and not is_night(local(2026, 6, 1, 6, 0), cfg)
    # the same instant in UTC is judged by the configured zone
    utc_noon_is_8pm_in_shanghai = local(2026, 6, 1, 20, 0)
    assert utc_noon_is_8pm_in_shanghai.hour == 12 and is_night(utc_noon_is_8pm_in_shanghai, NIGHT_AT_20)


@pytest.mark.parametrize("rule,hh,mm,minutes", [
    (SAME_TOWNSHIP, 19, 59, 20), (SAME_TOWNSHIP, 20, 1, 30),
    (LEAVING_CITY, 19, 59, 15), (LEAVING_CITY, 20, 1, 25)])
def test_response_limits(rule, hh, mm, minutes):
    sent = local(2026, 6, 1, hh, mm)
    assert response_minutes(rule, sent, NIGHT_AT_20) == minutes
    d = stage_deadlines(rule, sent, NIGHT_AT_20)
    stage = ARRIVAL if rule == SAME_TOWNSHIP else ASSEMBLY
    assert d[stage] - sent == timedelta(minutes=minutes)
    assert d[REPORT] - sent == timedelta(hours=24) and d[RECEIPT] == sent


def test_plan_is_the_whole_ladder_per_stage():
    sent = local(2026, 6, 1, 10, 0)
    plan = plan_steps(SAME_TOWNSHIP, sent, EscalationConfig())
    got = [(p.stage, p.action, int((p.due_at - sent).total_seconds() // 60)) for p in plan]
    assert got[:8] == [("receipt", "sms_again", 3), ("receipt", "call_commander", 6), ("receipt", "call_deputy", 9),
                       ("receipt", "supervisor", 12), ("arrival", "sms_again", 20), ("arrival", "call_commander", 23),
                       ("arrival", "call_deputy", 26), ("arrival", "supervisor", 29)]
    assert [g[0] for g in got[8:]] == ["report"] * 4 and got[8][2] == 24 * 60


@pytest_twisted.inlineCallbacks
def test_orders_at_1959_and_2001_are_chased_at_2019_and_2031(database):
    yield database.run(seed_directory_tx, 2)
    rig = Rig(database, local(2026, 6, 1, 19, 59), NIGHT_AT_20)
    yield rig.start()
    try:
        day = yield rig.send(teams_=("PUB-01",))
        assert "20分钟内到达" in rig.outbox.to(phone(1, "commander"), "order")[0]
        yield rig.advance_to(local(2026, 6, 1, 20, 1))
        night = yield rig.send(teams_=("PUB-02",))
        assert "30分钟内到达" in rig.outbox.to(phone(2, "commander"), "order")[0]
        # both teams acknowledge, so that only the arrival ladder speaks
        yield rig.sms(phone(1, "commander"), f"{day.code} 1")
        yield rig.sms(phone(2, "commander"), f"{night.code} 1")

        def arrival_reminders(i):
            return [t for t in rig.outbox.to(phone(i, "commander"), "reminder") if "到达" in t]
        yield rig.advance_to(local(2026, 6, 1, 20, 18, 59))
        assert arrival_reminders(1) == [] and arrival_reminders(2) == []
        yield rig.advance_to(local(2026, 6, 1, 20, 19))
        assert len(arrival_reminders(1)) == 1 and arrival_reminders(2) == []
        yield rig.advance_to(local(2026, 6, 1, 20, 30, 59))
        assert arrival_reminders(2) == []
        yield rig.advance_to(local(2026, 6, 1, 20, 31))
        assert len(arrival_reminders(2)) == 1
    finally:
        rig.stop()


@pytest.mark.parametrize("bad", [dict(timezone="Mars/Base"), dict(night_starts="8pm"), dict(day_starts="20:00"),
                                 dict(arrive_day_minutes=0), dict(receipt_ladder=[]),
                                 dict(receipt_ladder=[{"minutes": 3, "action": "sms_again"}]),
                                 dict(arrival_ladder=[{"minutes": 5, "action": "sms_again"},
                                                      {"minutes": 1, "action": "supervisor"}])])
def test_bad_configuration_is_refused(bad):
    from gateway.escalation.config import LadderStep
    for k in ("receipt_ladder", "arrival_ladder"):
        if k in bad:
            bad[k] = [LadderStep(**x) for x in bad[k]]
    with pytest.raises(ValueError):
        EscalationConfig(**{"night_starts": "20:00", **bad} if "day_starts" in bad else bad)


def test_configuration_from_toml_section():
    from gateway.config import build_section
    problems = []
    cfg = build_section(EscalationConfig, {"night_starts": "20:00", "day_starts": "08:00",
                                           "receipt_ladder": [{"minutes": 2, "action": "sms_again"},
                                                              {"minutes": 5, "action": "supervisor"}]},
                        "escalation", problems)
    assert problems == [] and cfg.night_starts == "20:00" and cfg.receipt_ladder[1].minutes == 5.0
    build_section(EscalationConfig, {"receipt_ladder": [{"minutes": 2, "action": "email"}]}, "escalation", problems)
    assert problems and "email" in problems[0]


@pytest_twisted.inlineCallbacks
def test_leaving_city_team_is_chased_for_assembly_at_25_min_by_night(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, local(2026, 6, 1, 23, 0))        # night by the default 22:00-06:00
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",), rule="leaving_city")
        assert "25分钟内集结完毕并出发" in rig.outbox.to(phone(1, "commander"), "order")[0]
        yield rig.sms(phone(1, "deputy"), f"{order.code} 收到")
        yield rig.advance_to(local(2026, 6, 1, 23, 24, 59))
        assert rig.outbox.to(phone(1, "commander"), "reminder") == []
        yield rig.advance_to(local(2026, 6, 1, 23, 25))
        assert len(rig.outbox.to(phone(1, "commander"), "reminder")) == 1
        out, _ = yield rig.sms(phone(1, "commander"), f"{order.code} 集结完毕 18人出发", local(2026, 6, 1, 23, 27))
        assert out.accepted and out.message == f"已记录 {order.code} 集结完毕 23:27"
        yield rig.advance_to(local(2026, 6, 2, 3, 0))        # no arrival limit for a team leaving the city
        assert len(rig.outbox.to(phone(1, "commander"), "reminder")) == 1 and rig.caller.calls == []
    finally:
        rig.stop()
