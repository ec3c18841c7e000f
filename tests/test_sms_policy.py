"""The bank's pure policy: which modem finishes soonest, pinned messages, error classes."""
import pytest

from sms import policy
from sms.policy import Job, ModemView, plan


def mv(name, idle=True, free_at=0.0, sps=5.0, min_interval=0.0):
    return ModemView(name=name, idle=idle, free_at=free_at, seconds_per_segment=sps, min_interval=min_interval)


@pytest.mark.parametrize("code,kind", [
    (38, policy.RETRY), (42, policy.RETRY), (47, policy.RETRY), (331, policy.RETRY), (332, policy.RETRY),
    (500, policy.RETRY), (304, policy.OUR_BUG), (310, policy.BENCH), (313, policy.BENCH),
    (21, policy.FAIL), (1, policy.FAIL),
])
def test_cms_classes(code, kind):
    assert policy.classify_cms(code) == kind


def test_idle_modems_take_the_head_of_the_queue():
    jobs = [Job(i, 2) for i in range(10)]
    out = plan(jobs, [mv("a"), mv("b"), mv("c")], now=0)
    assert out == [(0, "a"), (1, "b"), (2, "c")]


def test_a_job_waits_for_a_fast_busy_modem_rather_than_a_slow_idle_one():
    # 'fast' frees in 1 s and does a segment in 1 s; 'slow' is idle but takes 30 s per segment
    jobs = [Job("last", 2)]
    out = plan(jobs, [mv("fast", idle=False, free_at=1.0, sps=1.0), mv("slow", sps=30.0)], now=0)
    assert out == []                           # finishing at 3 s beats 60 s


def test_slow_idle_modem_still_gets_work_when_it_finishes_sooner():
    jobs = [Job(i, 1) for i in range(12)]
    out = plan(jobs, [mv("fast", idle=False, free_at=1.0, sps=1.0), mv("slow", sps=5.0)], now=0)
    assert len(out) == 1 and out[0][1] == "slow"


def test_rate_limit_counts_as_time_per_segment():
    jobs = [Job("m", 1)]
    out = plan(jobs, [mv("limited", sps=1.0, min_interval=20.0), mv("free", sps=3.0)], now=0)
    assert out == [("m", "free")]


def test_pinned_job_goes_only_to_its_modem():
    jobs = [Job("half-sent", 1, modem="b"), Job("new", 2)]
    out = plan(jobs, [mv("a"), mv("b", idle=False, free_at=5)], now=0)
    assert out == [("new", "a")]
    out = plan([Job("half-sent", 1, modem="gone")], [mv("a")], now=0)
    assert out == []


def test_makespan_of_uniform_fanout_is_ideal():
    # simulate plan() round by round: 80 two-part messages, 8 equal modems
    now, free = 0.0, {f"m{i}": 0.0 for i in range(8)}
    queue = [Job(i, 2) for i in range(80)]
    while queue:
        views = [mv(n, idle=free[n] <= now, free_at=free[n], sps=3.0) for n in free]
        for key, name in plan(queue, views, now):
            free[name] = now + 2 * 3.0
            queue = [j for j in queue if j.key != key]
        now = min(t for t in free.values() if t > now) if queue else now
    assert max(free.values()) == 20 * 3.0


# --- status reports: TP-Status per TS 23.040 9.2.3.15, written out here from the spec's table ----

SPEC_GROUPS = [(0x00, 0x1F, "completed"), (0x20, 0x3F, "still_trying"), (0x40, 0x5F, "permanent"),
               (0x60, 0x7F, "gave_up"), (0x80, 0xFF, "reserved")]


def test_every_tp_status_value_falls_in_its_spec_group():
    for lo, hi, group in SPEC_GROUPS:
        for st in range(lo, hi + 1):
            assert policy.classify_status(st) == group, hex(st)


@pytest.mark.parametrize("status,attempts,state,expected", [
    (0x00, 1, "sent", "delivered"), (0x01, 1, "sent", "delivered"), (0x02, 1, "unknown", "delivered"),
    (0x21, 1, "sent", None),            # still trying: keep waiting, nothing changes
    (0x22, 1, "unknown", "sent"),       # still trying: the SC has it; never resent by the unknown policy
    (0x30, 1, "submitting", "sent"),
    (0x40, 1, "sent", "failed"), (0x46, 1, "sent", "failed"), (0x49, 4, "sent", "failed"),
    (0x60, 1, "sent", "queued"), (0x62, 4, "sent", "queued"), (0x62, 5, "sent", "failed"),
    (0x65, 7, "unknown", "failed"), (0x80, 1, "sent", None), (0xFF, 1, "unknown", None),
])
def test_report_outcome_drives_the_retry_policy(status, attempts, state, expected):
    assert policy.report_outcome(status, attempts, 5, state) == expected
