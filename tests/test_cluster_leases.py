"""Singletons held by leases: one holder at a time, taken over once the holder's `until` passed,
a holder that cannot renew stops its singleton before `until`; a clean stop hands it over at once."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
import pytest_twisted
from prometheus_client import REGISTRY
from sqlalchemy import select
from twisted.internet import defer, task

from gateway.cluster import leases
from gateway.cluster.singleton import LeasedPart
from gateway.storage.pool import make_engine
from gateway.storage.schema import leases as leases_table

T0 = datetime(2026, 12, 1, 20, 0, tzinfo=timezone.utc)
TIMEOUT, HEARTBEAT = 15.0, 3.0


def lease_row_tx(conn, name):
    return conn.execute(select(leases_table).where(leases_table.c.name == name)).first()


def aware(dt):
    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=timezone.utc)


# --- the SQL ----------------------------------------------------------------------------------------
@pytest_twisted.inlineCallbacks
def test_taken_renewed_refused_then_taken_over_once_expired(database):
    a = yield database.run(leases.acquire_tx, "auditor", "node-a", T0, TIMEOUT)
    assert (a.held, a.taken, a.generation) == (True, True, 1)
    b = yield database.run(leases.acquire_tx, "auditor", "node-b", T0 + timedelta(seconds=5), TIMEOUT)
    assert (b.held, b.holder) == (False, "node-a")
    a = yield database.run(leases.acquire_tx, "auditor", "node-a", T0 + timedelta(seconds=6), TIMEOUT)
    assert (a.held, a.taken, a.generation) == (True, False, 1)
    row = yield database.run(lease_row_tx, "auditor")
    assert aware(row.until) == T0 + timedelta(seconds=6 + TIMEOUT)
    # node-a dies after its renewal at +6: until +21 nobody else may have it
    b = yield database.run(leases.acquire_tx, "auditor", "node-b", T0 + timedelta(seconds=20.9), TIMEOUT)
    assert not b.held
    b = yield database.run(leases.acquire_tx, "auditor", "node-b", T0 + timedelta(seconds=21.1), TIMEOUT)
    assert (b.held, b.taken, b.generation) == (True, True, 2)
    a = yield database.run(leases.acquire_tx, "auditor", "node-a", T0 + timedelta(seconds=22), TIMEOUT)
    assert (a.held, a.holder) == (False, "node-b")
    # a clean stop of node-b: free at once
    yield database.run(leases.release_tx, "auditor", "node-b", T0 + timedelta(seconds=23))
    a = yield database.run(leases.acquire_tx, "auditor", "node-a", T0 + timedelta(seconds=23.5), TIMEOUT)
    assert (a.held, a.generation) == (True, 3)
    row = yield database.run(lease_row_tx, "auditor")
    assert (row.holder, row.generation) == ("node-a", 3)


@pytest.mark.parametrize("expired", [False, True], ids=["new-lease", "expired-lease"])
def test_two_nodes_racing_on_postgresql_one_wins(expired, request, pg_migrated_url):
    """Both nodes try in the same instant (a barrier inside their transactions): exactly one holds."""
    engine = make_engine(pg_migrated_url)
    request.addfinalizer(engine.dispose)
    if expired:
        with engine.begin() as conn:
            leases.acquire_tx(conn, "ami-events:pbx:5038", "node-old", T0 - timedelta(seconds=60), TIMEOUT)
    barrier = threading.Barrier(2, timeout=20)
    results: dict[str, leases.LeaseState] = {}
    errors: list[BaseException] = []

    def node(name):
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("SELECT 1")
                barrier.wait()
                results[name] = leases.acquire_tx(conn, "ami-events:pbx:5038", name, T0, TIMEOUT)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=node, args=(n,)) for n in ("node-a", "node-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    held = [n for n, s in results.items() if s.held]
    assert len(held) == 1, results
    with engine.begin() as conn:
        row = lease_row_tx(conn, "ami-events:pbx:5038")
    assert row.holder == held[0]
    assert row.generation == (2 if expired else 1)


# --- the service --------------------------------------------------------------------------------------
class FakeNode:
    def __init__(self, name):
        self.name, self.timeout_s, self.heartbeat_s = name, TIMEOUT, HEARTBEAT
        self.alive = True
        self.registered = defer.succeed(self)


class Cut:
    """The database as one node sees it: `down` makes every unit of work fail (the node is cut off)."""

    def __init__(self, db):
        self.db, self.down = db, False

    def run(self, fn, *a, **kw):
        if self.down:
            return defer.fail(ConnectionError("server closed the connection unexpectedly"))
        return self.db.run(fn, *a, **kw)


class Singleton:
    """The child part: records on the shared clock when it ran on which node."""

    def __init__(self, clock, node, log):
        self.clock, self.node, self.log = clock, node, log

    def start(self):
        self.log.append(("start", self.node, self.clock.seconds()))

    def stop(self):
        self.log.append(("stop", self.node, self.clock.seconds()))


def intervals(log):
    """(node, from, to) of every run of the singleton; `to` None while it runs."""
    out, open_ = [], {}
    for what, node, t in log:
        if what == "start":
            assert node not in open_
            open_[node] = t
        else:
            out.append((node, open_.pop(node), t))
    out += [(n, t, None) for n, t in open_.items()]
    return sorted(out, key=lambda x: x[1])


@defer.inlineCallbacks
def advance(clock, parts, seconds, step=0.5):
    """Move the shared clock, letting each part's lease transaction commit at each step."""
    t = 0.0
    while t < seconds - 1e-9:
        clock.advance(step)
        t += step
        for p in parts:
            if p._trying is not None:
                yield p._trying
            yield p._child


@pytest_twisted.inlineCallbacks
def test_the_holder_dies_the_other_takes_over_never_two_at_once(database):
    clock = task.Clock()
    clock.advance(T0.timestamp())
    log = []
    cut_a = Cut(database)
    parts = []
    for name, db in (("node-a", cut_a), ("node-b", database)):
        node = FakeNode(name)
        s = Singleton(clock, name, log)
        p = LeasedPart(clock, db, node, "escalation-auditor", s.start, s.stop, what="the auditor")
        parts.append(p)
    a, b = parts
    a.startService()
    yield a.ready
    yield advance(clock, [a], 1.0)          # b's heartbeats fall between a's renewals
    b.startService()
    yield b.ready
    assert a.held and not b.held
    assert REGISTRY.get_sample_value("yihu_lease_held", {"lease": "escalation-auditor"}) is not None
    health = b.health()
    assert health.ok and "standby" in health.detail and "node-a" in health.detail
    assert "held by this node" in a.health().detail
    yield advance(clock, parts, 30)
    assert a.held and not b.held and intervals(log) == [("node-a", T0.timestamp(), None)]
    # node-a is cut off from the database: it cannot renew
    cut_a.down = True
    died = clock.seconds()
    last_renewal = died - (died - T0.timestamp()) % HEARTBEAT
    yield advance(clock, parts, TIMEOUT + 2 * HEARTBEAT)
    runs = intervals(log)
    assert [r[0] for r in runs] == ["node-a", "node-b"]
    (_, _, a_stopped), (_, b_started, b_end) = runs
    assert b_end is None and b.held and not a.held
    until = last_renewal + TIMEOUT
    assert a_stopped <= until - HEARTBEAT + 1e-6       # stopped itself before its lease could be taken
    # taken as soon as `until` passed (the standby tries again then, not at its next heartbeat):
    # within the 0.5 s steps the test moves the clock by
    assert until <= b_started <= until + 0.5 + 1e-6
    assert b_started - died <= TIMEOUT + 0.5
    row = yield database.run(lease_row_tx, "escalation-auditor")
    assert (row.holder, row.generation) == ("node-b", 2)
    # node-a comes back: standby, no second holder
    cut_a.down = False
    yield advance(clock, parts, 10)
    assert not a.held and b.held and len(intervals(log)) == 2
    # a clean stop hands it over at the other node's next try, not after the timeout
    stopped = clock.seconds()
    yield b.stopService()
    yield advance(clock, parts, HEARTBEAT + 0.5)
    runs = intervals(log)
    assert runs[-1][0] == "node-a" and runs[-1][2] is None
    assert runs[-1][1] - stopped <= HEARTBEAT + 0.5
    assert runs[-2][2] == stopped
    yield a.stopService()


@pytest_twisted.inlineCallbacks
def test_a_node_not_alive_gives_up_its_lease_and_metrics_say_so(database):
    clock = task.Clock()
    clock.advance(T0.timestamp())
    node = FakeNode("node-a")
    log = []
    s = Singleton(clock, "node-a", log)
    p = LeasedPart(clock, database, node, "event-retention-test", s.start, s.stop)
    before = REGISTRY.get_sample_value("yihu_lease_changes_total", {"lease": "event-retention-test"}) or 0
    p.startService()
    yield p.ready
    assert REGISTRY.get_sample_value("yihu_lease_held", {"lease": "event-retention-test"}) == 1
    node.alive = False                       # its heartbeat failed: it must not hold singletons
    yield advance(clock, [p], HEARTBEAT)
    assert not p.held and [w for w, _n, _t in log] == ["start", "stop"]
    assert REGISTRY.get_sample_value("yihu_lease_held", {"lease": "event-retention-test"}) == 0
    assert REGISTRY.get_sample_value("yihu_lease_changes_total", {"lease": "event-retention-test"}) == before + 2
    node.alive = True
    yield advance(clock, [p], HEARTBEAT)
    assert p.held and [w for w, _n, _t in log] == ["start", "stop", "start"]
    yield p.stopService()
    assert [w for w, _n, _t in log] == ["start", "stop", "start", "stop"]
