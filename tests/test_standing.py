"""Where a team stands against the rules (the wall board's colours and flags), on both rules and by
day and night, computed with the deadlines written out here by hand."""
from datetime import datetime, timedelta, timezone

from gateway.escalation.config import EscalationConfig
from gateway.escalation.deadlines import stage_deadlines
from gateway.orders.standing import standing

CFG = EscalationConfig()
DAY = datetime(2026, 5, 6, 2, 0, tzinfo=timezone.utc)       # 10:00 in Shanghai
NIGHT = datetime(2026, 5, 6, 15, 0, tzinfo=timezone.utc)    # 23:00 in Shanghai


def at(sent, minutes):
    return sent + timedelta(minutes=minutes)


def test_same_township_by_day_and_night():
    d = stage_deadlines("same_township", DAY, CFG)
    s = standing("sent", {}, False, DAY, d, at(DAY, 2), CFG)
    assert (s.minutes, s.stage, s.deadline, s.silent, s.late) == (2, "arrival", at(DAY, 20), False, False)
    s = standing("delivered", {}, False, DAY, d, at(DAY, 3), CFG)
    assert s.silent and not s.late                        # the first receipt rung (3 min) has passed
    s = standing("received", {"received": 60}, False, DAY, d, at(DAY, 21), CFG)
    assert (s.silent, s.late, s.needs_attention) == (False, True, True)
    s = standing("arrived", {"received": 60, "arrived": 900}, False, DAY, d, at(DAY, 21), CFG)
    assert (s.stage, s.deadline, s.late) == ("report", at(DAY, 24 * 60), False)
    s = standing("finished", {"finished": 1200}, True, DAY, d, at(DAY, 30), CFG)
    assert (s.stage, s.deadline, s.needs_attention) == (None, None, False)
    n = stage_deadlines("same_township", NIGHT, CFG)
    assert not standing("received", {"received": 60}, False, NIGHT, n, at(NIGHT, 25), CFG).late   # 30 at night


def test_leaving_city_measures_assembly_first_and_declined_needs_the_dispatcher():
    d = stage_deadlines("leaving_city", DAY, CFG)
    s = standing("received", {"received": 60}, False, DAY, d, at(DAY, 16), CFG)
    assert (s.stage, s.deadline, s.late) == ("assembly", at(DAY, 15), True)
    s = standing("assembled", {"received": 60, "assembled": 600}, False, DAY, d, at(DAY, 16), CFG)
    assert (s.stage, s.late) == ("report", False)
    s = standing("declined", {}, False, DAY, d, at(DAY, 16), CFG)
    assert s.needs_attention and not s.silent and s.deadline is None
