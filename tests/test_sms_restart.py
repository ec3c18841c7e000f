"""The gateway process dies in the middle of a fan-out; a fresh bank on the same database takes
over.  The rest goes out; nothing already confirmed goes again; any duplicate is one counted as
"outcome unknown" (a segment that was being submitted at the moment of death)."""
import time
from collections import Counter

import pytest_twisted
from sqlalchemy import select
from twisted.internet import defer, reactor, task

from gateway.storage import schema as t
from sms.bank import SmsBank, serial_opener
from sms.config import SmsConfig
from sms.emulator import EmulatorBank
from sms.modem import READY
from sms.store import SqlStore

ORDER = ("【县应急指挥中心】命令0427：请立即集合队伍，携带破拆与照明装备，30分钟内到达城关镇东街12号集结点，"
         "到达后回复“0427 到达”，指挥长张𠀀三。")


class KillableStore:
    """The process's view of the database: after kill() nothing more reaches it (a dead process)."""

    def __init__(self, inner):
        self.inner = inner
        self.killed = False
        self.hanging = []        # kept alive: the dead process's coroutines stay suspended, not collected
        self.in_flight = []

    def __getattr__(self, name):
        fn = getattr(self.inner, name)

        def call(*a, **kw):
            if self.killed:
                d = defer.Deferred()             # never fires: the process is gone
                self.hanging.append(d)
                return d
            d = fn(*a, **kw)
            self.in_flight.append(d)
            return d
        return call

    def kill(self):
        """Die; what was already handed to the database commits (or not) on its own: wait for it."""
        self.killed = True
        flying = [d for d in self.in_flight if not d.called]
        return defer.DeferredList([d for d in flying], consumeErrors=True)


def config():
    return SmsConfig(expected_segment_seconds=0.03, command_timeout=2.0, submit_timeout=2.0, prompt_timeout=2.0,
                     probe_interval=1.0, reopen_interval=0.1, reopen_max_interval=0.5, unknown_wait=1.0,
                     affinity_wait=5.0, late_answer_grace=0.5, bench_cooldown=3.0)


@defer.inlineCallbacks
def until(predicate, timeout, what, detail=lambda: ""):
    deadline = time.monotonic() + timeout
    while not (yield predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} {detail()}")
        yield task.deferLater(reactor, 0.05, lambda: None)


def phone(i):
    return f"+86139{i:08d}"


@pytest_twisted.inlineCallbacks
def test_restart_during_fanout_sends_the_rest_and_nothing_confirmed_twice(database, tmp_path):
    emu = EmulatorBank(reactor, 3, str(tmp_path / "ports"), segment_time=0.04, report_delay=0.3)
    emu.start()
    openers = {p: serial_opener(reactor, p, 115200) for p in emu.paths}
    first_store = KillableStore(SqlStore(database))
    first = SmsBank(reactor, first_store, config(), openers)
    second = None
    try:
        yield first.start()
        ids = yield defer.gatherResults([first.enqueue(phone(i), ORDER, purpose="order") for i in range(80)])
        yield until(lambda: defer.succeed(emu.network.submitted >= 60), 30, "a third of the fan-out")
        # kill -9: the old process writes nothing more and its ports close
        settled = first_store.kill()
        first.abandon()
        yield settled
        seg = t.sms_segments
        rows = yield database.run(lambda c: c.execute(select(seg.c.message_id, seg.c.seq, seg.c.state)).all())
        confirmed = {(m, s) for m, s, st in rows if st in ("sent", "delivered")}
        in_flight = {(m, s) for m, s, st in rows if st == "submitting"}
        assert confirmed and len(confirmed) < 160
        # the new process
        second = SmsBank(reactor, SqlStore(database), config(), openers)
        yield second.start()

        def all_final():
            return database.run(lambda c: c.execute(select(t.sms_messages.c.state)).scalars().all()) \
                .addCallback(lambda states: len(states) == 80 and all(s in ("sent", "delivered") for s in states))
        yield until(all_final, 30, "every message sent after the restart",
                    lambda: f"{second.summary()} {second.stats} "
                            f"{[(s.driver.name[-6:], s.driver.state, s.busy) for s in second.slots.values()]} "
                            f"{[(m.id, m.modem and m.modem[-6:], m.active, [(x['state'], x['mr']) for x in m.segments]) for m in second.messages.values() if m.state not in ('sent', 'delivered')][:6]}")
        phone_of = dict(zip(ids, (phone(i) for i in range(80))))
        part_counts = Counter()
        for ph, parts in emu.network.parts.items():
            for p in parts:
                part_counts[(ph, p.seq)] += 1
        for (mid, seq) in confirmed:
            assert part_counts[(phone_of[mid], seq)] == 1, f"confirmed part {seq} of message {mid} went again"
        unknown = yield database.run(lambda c: dict(c.execute(
            select(seg.c.message_id, seg.c.outcome_unknown).where(seg.c.outcome_unknown > 0)).all()))
        assert {m for m, _s in in_flight} <= set(unknown)
        for mid in ids:
            copies = emu.network.complete_messages(phone_of[mid])[ORDER]
            assert copies >= 1, f"{phone_of[mid]} never got the order"
            if copies > 1:
                assert mid in unknown, f"uncounted duplicate to {phone_of[mid]}"
        print(f"\nrestart: {len(confirmed)} segments confirmed before the kill, {len(in_flight)} in flight "
              f"(outcome unknown after restart), resent {second.stats['unknown_resent']}")
    finally:
        first.abandon()
        if second is not None:
            second.stop()
        emu.stop()
