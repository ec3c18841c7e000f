"""Overflow and "no call-taker logged in", followed through AMI only: each raises an event at
once and, if it goes on past hotline.supervisor_wait_s, an SMS to the duty supervisor of the
roster; each episode is a row of hotline_alerts.  Timers on a Clock; the real database."""
from datetime import timedelta

import pytest_twisted
from sqlalchemy import select
from twisted.internet import task

from gateway.ami.emulator.model import Chan, event
from gateway.hotline.alerts import HotlineAlerts
from gateway.hotline.config import HotlineSection
from gateway.storage.schema import hotline_alerts
from tests._orders_rig import SUPERVISOR, FakeEvents, FakeOutbox, local, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)
CFG = HotlineSection(overflow_after_s=60, supervisor_wait_s=120)


def caller(n):
    return Chan(f"PJSIP/trunk-{n:08d}", f"1772416800.{n}", state=6, cid_num=f"1380576{n:04d}",
                context="hotline-intake", exten="s", channelvars=("HOTLINE",), variables={"HOTLINE": "110"})


def join(c):
    return event("QueueCallerJoin", c.block(), [("Queue", "calltakers"), ("Position", "1"), ("Count", "1")])


def leave(c, name="QueueCallerLeave"):
    return event(name, c.block(), [("Queue", "calltakers"), ("Position", "1"), ("Count", "0")])


def rows_tx(conn):
    return conn.execute(select(hotline_alerts).order_by(hotline_alerts.c.id)).all()


class Rig:
    def __init__(self, database):
        self.clock = task.Clock()
        self.clock.advance(T0.timestamp())
        self.events, self.outbox = FakeEvents(), FakeOutbox()
        database.add_event_listener(self.events.committed)        # what the event log committed
        self.alerts = HotlineAlerts(self.clock, database, self.outbox, CFG)
        self.db = database

    def feed(self, *msgs):
        for m in msgs:
            self.alerts.handle(m)
        return self.alerts.settle()

    @pytest_twisted.inlineCallbacks
    def advance(self, seconds, step=1.0):
        for _ in range(int(seconds / step)):
            self.clock.advance(step)
            yield self.alerts.settle()
            yield self.alerts.settle()


@pytest_twisted.inlineCallbacks
def test_overflow_raises_an_event_then_the_supervisor_sms_once_per_episode(database):
    yield database.run(seed_directory_tx, 1, T0 - timedelta(days=1))
    rig = Rig(database)
    a, b = caller(1), caller(2)
    yield rig.feed(join(a))
    yield rig.advance(59)
    assert rig.events.of("hotline.overflow") == []
    yield rig.feed(join(b))
    yield rig.advance(2)                                          # a: past 60 s
    [ev] = rig.events.of("hotline.overflow")
    assert ev["line"] == "110" and ev["call_id"] == a.linkedid and ev["waited_s"] >= 60
    yield rig.advance(60)                                         # b overflows too: the same episode
    assert len(rig.events.of("hotline.overflow")) == 1
    assert rig.outbox.to(SUPERVISOR) == []
    yield rig.advance(60)                                         # 120 s after it was raised
    [text] = rig.outbox.to(SUPERVISOR, "supervisor")
    assert "接警队列溢出" in text and "10:01" in text
    [row] = yield database.run(rows_tx)
    assert (row.kind, row.state, row.line, row.supervisor_phone) == ("overflow", "notified", "110", SUPERVISOR)
    assert row.sms_message_id is not None and row.notified_at is not None
    yield rig.feed(leave(a, "QueueCallerAbandon"), leave(b))
    [row] = yield database.run(rows_tx)
    assert row.state == "cleared" and row.cleared_at is not None
    assert len(rig.events.of("hotline.overflow_cleared")) == 1
    assert len(rig.outbox.to(SUPERVISOR)) == 1


@pytest_twisted.inlineCallbacks
def test_a_short_overflow_is_recorded_but_does_not_wake_the_supervisor(database):
    yield database.run(seed_directory_tx, 1, T0 - timedelta(days=1))
    rig = Rig(database)
    a = caller(3)
    yield rig.feed(join(a))
    yield rig.advance(70)
    assert len(rig.events.of("hotline.overflow")) == 1
    yield rig.feed(event("Hangup", a.block(), [("Cause", "16")]))   # answered or gone before the wait
    yield rig.advance(200)
    assert rig.outbox.sent == []
    [row] = yield database.run(rows_tx)
    assert (row.kind, row.state, row.supervisor) == ("overflow", "cleared", None)


@pytest_twisted.inlineCallbacks
def test_no_calltaker_logged_in_tells_the_supervisor_until_someone_logs_in(database):
    yield database.run(seed_directory_tx, 1, T0 - timedelta(days=1))
    rig = Rig(database)
    a = caller(4)
    no_one = event("UserEvent", a.block(), [("UserEvent", "YihuNoCalltaker"), ("Line", "119")], cls="user")
    yield rig.feed(no_one)
    [ev] = rig.events.of("hotline.no_calltaker")
    assert ev["line"] == "119"
    yield rig.advance(121)
    [text] = rig.outbox.to(SUPERVISOR, "supervisor")
    assert "无接警员在岗" in text and "119" in text
    member = event("QueueMemberStatus", [("Queue", "calltakers"), ("Interface", "PJSIP/1001"),
                                         ("Status", "1"), ("Paused", "0")], cls="agent")
    yield rig.feed(member)
    rows = yield database.run(rows_tx)
    assert [(r.kind, r.state) for r in rows] == [("no_calltaker", "cleared")]
    # the next empty-queue call is a new episode
    yield rig.feed(no_one)
    assert len(rig.events.of("hotline.no_calltaker")) == 2


@pytest_twisted.inlineCallbacks
def test_a_restart_re_arms_the_supervisor_sms_from_the_row(database):
    yield database.run(seed_directory_tx, 1, T0 - timedelta(days=1))
    rig = Rig(database)
    yield rig.feed(join(caller(5)))
    yield rig.advance(61)
    rig.alerts.stop()                                             # the gateway stops
    again = Rig(database)
    again.clock.advance(100)                                      # ... and is back 100 s later
    yield again.alerts.start()
    yield again.advance(90)
    assert len(again.outbox.to(SUPERVISOR, "supervisor")) == 1
    [row] = yield database.run(rows_tx)
    assert row.state == "notified"
