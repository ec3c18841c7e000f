"""Randomised fault trials: modems killed, hung or unplugged at random points of a fan-out to 80
phones.  No phone may end without its order; every duplicate must be one the gateway counted as
"outcome unknown".  CI runs a fixed-seed share (80 trials); `-m slow` runs 500 more on a fresh
seed, printed (YIHU_SMS_FAULT_SEED / _TRIALS override it).

Driven in-process by a Clock (the serial code is covered over ptys elsewhere), so that 80
trials of 80 phones with realistic modem times (3-10 s per segment) take seconds.
"""
import bisect
import os
import random

import pytest

from twisted.internet.base import DelayedCall
from twisted.internet.task import Clock

from sms.config import SmsConfig
from sms.emulator.harness import in_process
from sms.store import MemoryStore

ORDER = ("【县应急指挥中心】命令0427：请立即集合队伍，携带破拆与照明装备，30分钟内到达城关镇东街12号集结点，"
         "到达后回复“0427 到达”，指挥长张𠀀三。")
PHONES = [f"+86139{i:08d}" for i in range(80)]
FINAL = ("sent", "delivered", "failed", "unknown")


class FastClock(Clock):
    """A Clock whose callLater inserts in order instead of re-sorting (same semantics: stable)."""

    def callLater(self, delay, callable, *args, **kw):
        dc = DelayedCall(self.seconds() + delay, callable, args, kw, self.calls.remove, self._resort,
                         self.seconds)
        bisect.insort_right(self.calls, dc, key=DelayedCall.getTime)
        return dc

    def _resort(self, _call):
        self.calls.sort(key=DelayedCall.getTime)

    def advance(self, amount):
        self.rightNow += amount
        while self.calls and self.calls[0].getTime() <= self.seconds():
            call = self.calls.pop(0)
            call.called = 1
            call.func(*call.args, **call.kw)


def drive(clock, done, limit):
    """Advance the clock call by call until done() or the time limit."""
    n = 0
    while clock.seconds() < limit:
        n += 1
        if n % 20 == 0 and done():
            return
        calls = clock.getDelayedCalls()          # a Clock keeps them sorted by time
        if not calls:
            break
        clock.advance(max(0.0, min(calls[0].getTime(), limit) - clock.seconds()))


def one_trial(seed):
    rnd = random.Random(seed)
    clock = FastClock()
    store = MemoryStore()
    n = rnd.choice([2, 3, 4, 6])
    seg_time = rnd.uniform(3.0, 10.0)
    config = SmsConfig(submit_timeout=30.0, prompt_timeout=5.0, command_timeout=5.0, probe_interval=15.0,
                       unknown_wait=90.0, affinity_wait=60.0, bench_cooldown=30.0, retry_delay=5.0,
                       reopen_interval=1.0, reopen_max_interval=8.0, expected_segment_seconds=seg_time,
                       max_attempts=50)
    rig = in_process(clock, n, store, config, segment_time=seg_time, report_delay=rnd.uniform(1.0, 60.0),
                     status_reports=rnd.random() < 0.7, boot_time=rnd.uniform(1.0, 15.0))
    rig.bank.start()
    ids = {}
    for p in PHONES:
        rig.bank.enqueue(p, ORDER, purpose="order").addCallback(lambda mid, p=p: ids.__setitem__(p, mid))
    clock.advance(0)
    emu = rig.emulator
    makespan = 160 / n * seg_time
    faults = []

    def fault(kind, i):
        m = emu.modems[i]
        inflight = rnd.random() < 0.5
        if kind == "kill":
            m.reboot(network_gets_inflight=inflight)
        elif kind == "hang":
            m.hang(duration=rnd.uniform(5.0, 150.0), network_gets_inflight=inflight)
        elif kind == "unplug":
            emu.unplug(i, network_gets_inflight=inflight)
            clock.callLater(rnd.uniform(2.0, 150.0), emu.replug, i)
        elif kind == "late":
            m.delay_next_response(rnd.uniform(config.submit_timeout, 2 * config.submit_timeout))
        elif kind == "cms":
            m.fail_next_submits(rnd.choice([38, 42, 47, 331, 332]), rnd.randint(1, 3))

    for _ in range(rnd.randint(1, 5)):
        kind = rnd.choice(["kill", "hang", "unplug", "late", "cms"])
        i = rnd.randrange(n)
        at = rnd.uniform(0.0, makespan)
        faults.append(kind)
        clock.callLater(at, fault, kind, i)
    if n >= 3 and rnd.random() < 0.25:
        # one modem dies for good (power supply) mid fan-out
        i = rnd.randrange(n)
        clock.callLater(rnd.uniform(0.0, makespan), emu.unplug, i, rnd.random() < 0.5)
        faults.append("dead")

    drive(clock, lambda: len(ids) == 80 and all(rig.bank.message_state(m) in FINAL for m in ids.values()),
          limit=20000.0)

    missing, dup_uncounted, duplicates, unknown = [], [], 0, 0
    for p, mid in ids.items():
        copies = rig.phone_copies(p, ORDER)
        counted = sum(s["outcome_unknown"] for s in store.segments.values() if s["message_id"] == mid)
        unknown += counted
        if copies == 0:
            missing.append((p, rig.bank.message_state(mid)))
        if copies > 1:
            duplicates += copies - 1
            if copies - 1 > counted:
                dup_uncounted.append((p, copies, counted))
    rig.stop()
    return dict(seed=seed, modems=n, faults=faults, missing=missing, dup_uncounted=dup_uncounted,
                duplicates=duplicates, unknown=unknown, took=clock.seconds(), states=rig.bank.summary())


def run_trials(seed: int, trials: int) -> None:
    print(f"\nfault trials: seed {seed}, {trials} trials (rerun: YIHU_SMS_FAULT_SEED={seed} "
          f"YIHU_SMS_FAULT_TRIALS={trials} pytest -m slow {__file__}::test_long_randomised_fault_trials)")
    total = dict(duplicates=0, unknown=0, faults=0, missing=0, uncounted=0)
    bad = []
    for k in range(trials):
        r = one_trial(seed + k)
        total["duplicates"] += r["duplicates"]
        total["unknown"] += r["unknown"]
        total["faults"] += len(r["faults"])
        total["missing"] += len(r["missing"])
        total["uncounted"] += len(r["dup_uncounted"])
        if r["missing"] or r["dup_uncounted"]:
            bad.append(r)
    print(f"faults injected {total['faults']}, phones without the order {total['missing']}, "
          f"duplicates {total['duplicates']} (all counted: {total['uncounted'] == 0}), "
          f"segments counted outcome-unknown {total['unknown']}")
    assert total["faults"] >= trials, "the trials injected fewer faults than they ran: nothing was tested"
    assert not bad, bad[:3]


def test_randomised_faults_never_lose_and_never_silently_duplicate():
    # CI's share: a fixed seed, so that a red CI names a trial anyone can rerun, and a green one
    # means the same trials passed as last time.
    run_trials(seed=20261202, trials=80)


@pytest.mark.slow
def test_long_randomised_fault_trials():
    # A fresh seed each run (printed): more of the space than CI's fixed share.
    seed = int(os.environ.get("YIHU_SMS_FAULT_SEED", random.SystemRandom().randrange(1 << 30)))
    run_trials(seed, int(os.environ.get("YIHU_SMS_FAULT_TRIALS", "500")))
