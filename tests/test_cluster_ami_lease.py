"""One Asterisk, two gateway nodes each with its own AMI link: the hotline tracker follows the
events on the lease holder only (each call recorded once); when the holder dies the other node
takes the lease, loads the calls left open from the database, resyncs, and finishes them."""
from __future__ import annotations

import pytest
import pytest_twisted
from sqlalchemy import func, select
from twisted.internet import defer, reactor

from gateway.ami import AmiLink
from gateway.ami.emulator.pbx import EmulatedPbx
from gateway.ami.testing import CollectingSink, database_busy, run_deferred, run_until
from gateway.ami.testing import test_clock as make_clock
from gateway.cluster.singleton import LeasedPart
from gateway.hotline.feed import AmiEventFeed
from gateway.hotline.service import HotlineService
from gateway.hotline.store import get_call
from gateway.storage.schema import hotline_calls

TIMEOUT, HEARTBEAT = 4.0, 1.0


class FakeNode:
    def __init__(self, name):
        self.name, self.timeout_s, self.heartbeat_s = name, TIMEOUT, HEARTBEAT
        self.alive = True
        self.registered = defer.succeed(self)


class Cut:
    """The database as one node sees it; `down`: that node is cut off (every unit of work fails)."""

    def __init__(self, db):
        self.db, self.down = db, False
        self.url = db.url

    def run(self, fn, *a, **kw):
        if self.down:
            return defer.fail(ConnectionError("server closed the connection unexpectedly"))
        return self.db.run(fn, *a, **kw)


class GatewayNode:
    def __init__(self, name, clock, db, pbx):
        self.node = FakeNode(name)
        self.db = Cut(db)
        self.link = AmiLink(reactor, "127.0.0.1", pbx.port_number, username="gateway", secret="rig-secret",
                            action_timeout=2, backoff_initial=0.05, backoff_max=0.3, clock=clock)
        self.hotline = HotlineService(reactor, self.db, None, clock=clock, restore_at_start=False)
        self.feed = AmiEventFeed(self.link, self.hotline)
        self.lease = LeasedPart(clock, self.db, self.node, f"ami-events:127.0.0.1:{pbx.port_number}",
                                self.feed.start, self.feed.stop, what="the hotline tracker")

    def start(self):
        self.hotline.startService()
        self.link.startService()

    def finished(self, call) -> bool:
        return call.info.get("linkedid") in self.hotline.tracker.finished


@pytest.fixture
def clock():
    return make_clock()


@pytest.fixture
def pbx(clock):
    # ivr=False calls below: no FastAGI needed; the AGI target is never dialled
    p = EmulatedPbx(reactor, agi_host="127.0.0.1", agi_port=9, clock=clock)
    p.listen(0, "127.0.0.1")
    yield p
    pytest_twisted.blockon(p.stop())


def rows_tx(conn):
    return conn.execute(select(func.count()).select_from(hotline_calls)).scalar()


def kinds(sink, call):
    return [k.split(".")[1] for k, p in sink.events
            if p.get("call_id") == call.info.get("linkedid") and k != "hotline.caller_history"]


@pytest_twisted.inlineCallbacks
def test_each_call_recorded_once_and_the_survivor_finishes_the_open_one(pbx, database, clock):
    clock.owed.append(database_busy(database))
    sink = CollectingSink()
    database.add_event_listener(lambda events: [sink.publish(e.kind, e.payload) for e in events])
    a, b = GatewayNode("node-a", clock, database, pbx), GatewayNode("node-b", clock, database, pbx)
    for n in (a, b):
        n.start()
        yield run_deferred(reactor, clock, n.link.when_ready(), 5)
    a.lease.startService()
    yield run_deferred(reactor, clock, a.lease.ready, 5)
    b.lease.startService()
    yield run_deferred(reactor, clock, b.lease.ready, 5)
    assert a.lease.held and not b.lease.held

    # a call while both nodes see every event: recorded once, by the holder
    first = pbx.hotline_call("122", "13905760000", outcome="abandoned_queue", queue_seconds=0.4, ivr=False)
    yield run_deferred(reactor, clock, first.ended, 10)
    yield run_until(reactor, clock, lambda: a.finished(first), 5, what="node-a closed the call")
    yield run_deferred(reactor, clock, a.hotline.flushed(), 5)
    assert not b.finished(first) and b.hotline.tracker.active() == []
    assert kinds(sink, first) == ["arrived", "abandoned", "ended"]
    assert (yield database.run(rows_tx)) == 1

    # a long call, answered; then node-a dies (its AMI link and its database gone)
    second = pbx.hotline_call("110", "13905761111", outcome="answered", queue_seconds=0.3, talk_seconds=30,
                              ivr=False)
    yield run_until(reactor, clock, lambda: any(c.answered_at for c in a.hotline.tracker.active()), 5,
                    what="node-a saw the answer")
    yield run_deferred(reactor, clock, a.hotline.flushed(), 5)
    a.db.down = True
    yield a.link.stopService()
    died = clock.seconds()
    yield run_until(reactor, clock, lambda: b.lease.held, TIMEOUT + 3 * HEARTBEAT, what="node-b took the lease")
    assert clock.seconds() - died <= TIMEOUT + HEARTBEAT + 0.5
    assert not a.lease.held            # it stopped following the calls itself
    # node-b loaded the open call from the database and resynced: it follows it to its end
    yield run_until(reactor, clock, lambda: second.info.get("linkedid") in
                    {c.call_id for c in b.hotline.tracker.active()}, 5, what="node-b follows the open call")
    yield run_deferred(reactor, clock, second.ended, 40)
    yield run_until(reactor, clock, lambda: b.finished(second), 5, what="node-b closed the call")
    yield run_deferred(reactor, clock, b.hotline.flushed(), 5)
    assert kinds(sink, second) == ["arrived", "answered", "ended"]
    row = yield database.run(get_call, second.info["linkedid"])
    assert row["outcome"] == "answered" and row["ended_at"] is not None and row["answered_at"] is not None
    assert (yield database.run(rows_tx)) == 2
    # and the next call is recorded once, by node-b
    third = pbx.hotline_call("119", "13905762222", outcome="abandoned_queue", queue_seconds=0.4, ivr=False)
    yield run_deferred(reactor, clock, third.ended, 10)
    yield run_until(reactor, clock, lambda: b.finished(third), 5, what="node-b closed the third call")
    yield run_deferred(reactor, clock, b.hotline.flushed(), 5)
    assert kinds(sink, third) == ["arrived", "abandoned", "ended"]
    for n in (a, b):
        a.db.down = False
        yield n.lease.stopService()
    yield b.link.stopService()
