"""The node part: its name claimed at start, its heartbeat on the injected clock, its clean stop,
what /health and /metrics say; and SQLite refused to a second process (a file lock)."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import pytest_twisted
from prometheus_client import REGISTRY
from sqlalchemy import insert, select, update
from twisted.internet import defer, task

from gateway.cluster.config import ClusterSection
from gateway.cluster.node import NodeService
from gateway.service import PartFailed
from gateway.storage.schema import nodes
from tests._gateway_process import ROOT, GatewayProcess
from tests.conftest import BACKENDS

CFG = ClusterSection(node_timeout_s=15.0, heartbeat_s=3.0)
T0 = datetime(2026, 12, 1, 20, 0, tzinfo=timezone.utc)


def clock_at(dt: datetime) -> task.Clock:
    c = task.Clock()
    c.advance(dt.timestamp())
    return c


def row_tx(conn, name):
    return conn.execute(select(nodes).where(nodes.c.name == name)).first()


def aware(dt):
    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=timezone.utc)


@defer.inlineCallbacks
def beat(svc, clock, seconds):
    """Advance the clock by heartbeat periods, letting each heartbeat commit."""
    steps = int(seconds / CFG.heartbeat_s)
    for _ in range(steps):
        clock.advance(CFG.heartbeat_s)
        if svc._beating is not None:
            yield svc._beating


@pytest_twisted.inlineCallbacks
def test_registers_beats_and_stops(database):
    clock = clock_at(T0)
    svc = NodeService(clock, database, "node-a", CFG, modems=lambda: 3, host="host-a", pid=4242)
    svc.startService()
    yield svc.ready
    if svc._beating is not None:
        yield svc._beating
    row = yield database.run(row_tx, "node-a")
    assert (row.host, row.pid, row.modems, row.stopped_at) == ("host-a", 4242, 3, None)
    assert aware(row.started_at) == T0
    yield beat(svc, clock, 9)
    row = yield database.run(row_tx, "node-a")
    assert aware(row.heartbeat_at) == T0 + timedelta(seconds=9)
    assert svc.node.alive
    h = {p.name: p for p in svc.health()}
    assert h["node"].ok and "node-a" in h["node"].detail
    assert "node-a alive" in h["nodes"].detail
    assert REGISTRY.get_sample_value("yihu_nodes_alive") >= 1
    assert REGISTRY.get_sample_value("yihu_node_heartbeat_age_seconds", {"node": "node-a"}) == 0.0
    yield svc.stopService()
    row = yield database.run(row_tx, "node-a")
    assert aware(row.stopped_at) == T0 + timedelta(seconds=9)


@pytest_twisted.inlineCallbacks
def test_a_live_node_name_is_refused_and_a_dead_one_is_taken(database):
    clock = clock_at(T0)
    a = NodeService(clock, database, "node-a", CFG, host="host-a", pid=1)
    a.startService()
    yield a.ready
    b = NodeService(clock, database, "node-a", CFG, host="host-b", pid=2)
    b.startService()
    with pytest.raises(PartFailed) as e:
        yield b.ready
    assert "node-a" in str(e.value) and "host-a" in str(e.value)
    assert e.value.part == "node"
    # a seen by b: another node alive under another name is listed, not refused
    c = NodeService(clock, database, "node-c", CFG, host="host-c", pid=3)
    c.startService()
    yield c.ready
    yield c._beating
    assert ("node-a", True) in [(n, up) for n, up, _age, _h in c.node.peers]
    # node-a dies (no more heartbeats); past the timeout its name is free again
    a._loop.stop()
    clock.advance(CFG.node_timeout_s + 1)
    yield c._beating
    assert ("node-a", False) in [(n, up) for n, up, _age, _h in c.node.peers]
    assert REGISTRY.get_sample_value("yihu_node_heartbeat_age_seconds", {"node": "node-a"}) >= CFG.node_timeout_s
    d = NodeService(clock, database, "node-a", CFG, host="host-d", pid=4)
    d.startService()
    yield d.ready
    row = yield database.run(row_tx, "node-a")
    assert (row.host, row.pid) == ("host-d", 4)
    # the old process wakes up: its heartbeat finds the row not its own, and says so
    assert not a.node.alive       # no committed heartbeat within the timeout already
    yield a.beat()
    assert a.node.lost is not None
    h = {p.name: p for p in a.health()}
    assert not h["node"].ok and "no longer ours" in h["node"].detail
    row = yield database.run(row_tx, "node-a")
    assert (row.host, row.pid) == ("host-d", 4)      # untouched by the old one
    # its stop does not mark the new holder stopped
    yield a.stopService()
    row = yield database.run(row_tx, "node-a")
    assert row.stopped_at is None
    for s in (c, d):
        yield s.stopService()


class FailingHeartbeats:
    """The database, except that heartbeats fail to commit while `failing`."""

    def __init__(self, db):
        self.db, self.url, self.failing = db, db.url, False

    def run(self, fn, *args, **kw):
        if self.failing and fn.__name__ == "_heartbeat_tx":
            return defer.fail(RuntimeError("connection to the database lost"))
        return self.db.run(fn, *args, **kw)


@pytest_twisted.inlineCallbacks
def test_a_heartbeat_that_does_not_commit_turns_the_node_down(database):
    clock = clock_at(T0)
    db = FailingHeartbeats(database)
    svc = NodeService(clock, db, "node-a", CFG, host="h", pid=1)
    svc.startService()
    yield svc.ready
    yield svc._beating
    db.failing = True
    clock.advance(CFG.heartbeat_s)
    h = {p.name: p for p in svc.health()}
    assert not h["node"].ok and "heartbeat not committed" in h["node"].detail
    db.failing = False
    clock.advance(CFG.heartbeat_s)
    yield svc._beating
    h = {p.name: p for p in svc.health()}
    assert h["node"].ok
    # no heartbeat for the timeout (the loop stalled): not alive, down
    svc._loop.stop()
    clock.advance(CFG.node_timeout_s)
    assert not svc.node.alive
    assert not {p.name: p for p in svc.health()}["node"].ok
    yield svc.stopService()


# --- real processes ----------------------------------------------------------------------------

def _run_second(proc: GatewayProcess) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(proc.config)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_a_second_process_on_the_same_sqlite_file_is_refused(tmp_path):
    first = GatewayProcess(tmp_path, f"sqlite:///{tmp_path / 'shared.sqlite'}")
    first.start()
    try:
        # the second: same file, another data directory (its own ports are all 0)
        (tmp_path / "b").mkdir()
        second = GatewayProcess(tmp_path / "b", first.database_url)
        r = _run_second(second)
        assert r.returncode == 2, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("yihu:")]
        assert len(lines) == 1, r.stderr
        assert str(tmp_path / "shared.sqlite") in lines[0]
        assert f"pid {first.proc.pid}" in lines[0]
        assert first.proc.poll() is None           # the first one runs on
    finally:
        first.terminate()
    # once the first has gone, the file is free again
    (tmp_path / "c").mkdir()
    again = GatewayProcess(tmp_path / "c", first.database_url)
    again.start()
    assert again.terminate() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_live_node_name_stops_the_process_with_one_line(backend, tmp_path, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'yihu.sqlite'}"
    else:
        from tests.conftest import _postgres_schema_url
        url, drop = _postgres_schema_url()
        request.addfinalizer(drop)
    from gateway.storage.migrate import upgrade
    from gateway.storage.pool import make_engine
    upgrade(url)
    engine = make_engine(url)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(insert(nodes).values(name="yihu-east", host="east.example", pid=777, started_at=now,
                                          heartbeat_at=now + timedelta(seconds=60)))
    proc = GatewayProcess(tmp_path, url, gateway={"node_name": "yihu-east"})
    r = _run_second(proc)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("yihu:")]
    assert len(lines) == 1, r.stderr[-2000:]
    assert "yihu-east" in lines[0] and "node" in lines[0]
    with engine.begin() as conn:
        row = row_tx(conn, "yihu-east")
        assert (row.host, row.pid, row.stopped_at) == ("east.example", 777, None)     # left alone
        conn.execute(update(nodes).values(heartbeat_at=now - timedelta(seconds=60)))   # now it is dead
    engine.dispose()
    proc.start()
    assert proc.terminate() == 0
    engine = make_engine(url)
    with engine.begin() as conn:
        row = row_tx(conn, "yihu-east")
        assert row.pid == proc.proc.pid and row.stopped_at is not None
    engine.dispose()


def _try_lock_in_another_process(url: str) -> subprocess.CompletedProcess:
    code = ("import sys\nfrom gateway.cluster.sqlite_lock import DatabaseInUse, hold\n"
            "try:\n    hold(sys.argv[1])\nexcept DatabaseInUse as e:\n    print(e); sys.exit(2)\n")
    return subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest_twisted.inlineCallbacks
def test_a_gateway_in_process_holds_the_sqlite_lock_until_it_stops(tmp_path):
    import os

    from twisted.internet import reactor

    from gateway.storage import Database
    from gateway.storage.migrate import upgrade
    url = f"sqlite:///{tmp_path / 'drill.sqlite'}"
    upgrade(url)
    db = Database(reactor, url)
    db.start()
    try:
        svc = NodeService(clock_at(T0), db, "node-a", CFG)
        svc.startService()
        yield svc.ready
        assert (tmp_path / "drill.sqlite.lock").read_text().strip() == str(os.getpid())
        r = yield deferred_run(_try_lock_in_another_process, url)
        assert r.returncode == 2 and f"pid {os.getpid()}" in r.stdout
        yield svc.stopService()
        r = yield deferred_run(_try_lock_in_another_process, url)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        db.stop()


def deferred_run(fn, *args):
    """A blocking child process, waited for off the reactor thread."""
    from twisted.internet import reactor, threads
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)
