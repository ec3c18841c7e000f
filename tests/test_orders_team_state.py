"""The per-team state machine (pure)."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from gateway.escalation.deadlines import ARRIVAL, ASSEMBLY, RECEIPT, REPORT, SITUATION
from gateway.orders import team_state as ts

T = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)


def s0(rule="same_township"):
    return ts.TeamOrderState(rule=rule)


def test_progress_and_times():
    o = ts.on_answer(s0(), "received", T, 7)
    assert o.advanced and o.state.state == "received" and o.state.received_at == T and o.state.answered_by == 7
    o = ts.on_answer(o.state, "arrived", T + timedelta(minutes=12), 8)
    assert o.state.state == "arrived" and o.state.answered_by == 8
    assert ts.satisfied_stages(o.state) == {RECEIPT, ASSEMBLY, ARRIVAL}


def test_never_goes_back_and_keeps_first_times():
    s = ts.on_answer(s0(), "arrived", T, 1).state
    o = ts.on_answer(s, "received", T + timedelta(minutes=1), 2)
    assert o.accepted and not o.advanced and o.state.state == "arrived"
    assert o.state.received_at == T + timedelta(minutes=1) and o.state.arrived_at == T
    o2 = ts.on_answer(o.state, "arrived", T + timedelta(minutes=5), 2)
    assert o2.state.arrived_at == T


def test_arrival_alone_satisfies_receipt():
    s = ts.on_answer(s0(), "arrived", T, 1).state
    assert RECEIPT in ts.satisfied_stages(s)


def test_assembled_only_for_leaving_city():
    assert not ts.on_answer(s0(), "assembled", T, 1).accepted
    o = ts.on_answer(s0("leaving_city"), "assembled", T, 1)
    assert o.accepted and o.state.state == "assembled"
    assert ts.satisfied_stages(o.state) == {RECEIPT, ASSEMBLY}


def test_finished_report_completes_only_with_a_complete_form():
    s = ts.on_answer(s0(), "finished", T, 1).state
    assert REPORT not in ts.satisfied_stages(s)
    s = ts.on_answer(s, "finished", T + timedelta(hours=1), 1, "后续：无；责任人：张三；单位：城关镇").state
    # A report text alone does not meet the 24 h deadline: only the complete form does.
    assert REPORT not in ts.satisfied_stages(s) and s.finished_at == T and s.report
    assert REPORT in ts.satisfied_stages(replace(s, form_complete=True))


def test_declined_and_unreachable():
    s = ts.on_answer(s0(), "declined", T, 1, "车辆故障").state
    assert s.state == "declined" and s.reason == "车辆故障"
    assert ts.satisfied_stages(s) == {RECEIPT, ASSEMBLY, ARRIVAL, REPORT, SITUATION}
    s2 = ts.on_answer(s, "received", T, 1).state            # they found another vehicle
    assert s2.state == "received" and s2.reason is None
    u = ts.on_unreachable(s0(), "calls unanswered")
    assert u.state == "unreachable" and ts.satisfied_stages(u) == set()
    assert ts.on_answer(u, "received", T, 1).state.state == "received"
    assert ts.on_unreachable(s2, "x").state == "received"     # an answering team is never unreachable
    assert ts.on_delivered(s0(), T).state == "delivered"
