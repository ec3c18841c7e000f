"""This gateway as a node of the cluster: its name claimed at start, its heartbeat, its clean stop.

Started right after the database.  At start the node name is registered (gateway/cluster/nodes.py
register_tx): a live node already under that name stops the process (one line, exit 2).  On SQLite
the database file is locked first (gateway/cluster/sqlite_lock.py): SQLite is single-node.  Then a
heartbeat every `cluster.heartbeat_s` on the injected clock, with the count of usable modems; a
heartbeat that fails to commit, or finds the row no longer ours, turns the node part down in
/health, and `Node.alive` false, which the leases and claims read.  A clean stop writes stopped_at,
so the other nodes take the node's work at once rather than after node_timeout_s.
"""
from __future__ import annotations

import os
import socket
from typing import Callable

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from gateway import metrics
from gateway.cluster import nodes as sql
from gateway.cluster.config import ClusterSection
from gateway.health import PartHealth
from gateway.orders.times import from_seconds, utc
from gateway.service import Part

log = Logger()


class Node:
    """What the other parts need to know of this node: `name`, `timeout_s`, `alive`."""

    def __init__(self, clock, name: str, cfg: ClusterSection, host: str, pid: int):
        self.clock, self.name, self.host, self.pid = clock, name, host, pid
        self.timeout_s, self.heartbeat_s = cfg.node_timeout_s, cfg.heartbeat_s
        self.registered = defer.Deferred()        # fires once the name is ours
        self.last_ok: float | None = None         # clock time of the last committed heartbeat (or registration)
        self.lost: str | None = None              # why the row is not ours any more
        self.failure: str | None = None           # the last heartbeat's error, until one commits
        self.peers: list[tuple[str, bool, float | None, str]] = []   # (name, alive, heartbeat age, host)

    @property
    def alive(self) -> bool:
        """Registered, the row still ours, and a heartbeat committed within timeout_s: only then
        may this node claim work or hold a lease."""
        return (self.last_ok is not None and self.lost is None
                and self.clock.seconds() - self.last_ok < self.timeout_s)


def _heartbeat_tx(conn, name: str, host: str, pid: int, now, modems: int | None, timeout_s: float):
    ours = sql.heartbeat_tx(conn, name, now, modems, host=host, pid=pid)
    return ours, sql.all_nodes_tx(conn)


class NodeService(Part, service.Service):
    """The `node` part (gw.node is its Node)."""
    name = "node"

    def __init__(self, clock, db, node_name: str, cfg: ClusterSection, *,
                 modems: Callable[[], int | None] = lambda: None, host: str | None = None, pid: int | None = None):
        self.clock, self.db, self.cfg, self.modems = clock, db, cfg, modems
        self.node = Node(clock, node_name, cfg, host or socket.gethostname(), pid or os.getpid())
        self._loop: task.LoopingCall | None = None
        self._beating: defer.Deferred | None = None
        self._sqlite_lock = None
        self._registering: defer.Deferred | None = None

    def startService(self):
        super().startService()
        self._registering = defer.maybeDeferred(self._register)
        self._track_start(self._registering)

    @defer.inlineCallbacks
    def _register(self):
        from gateway.cluster.sqlite_lock import hold
        # DatabaseInUse: another process runs on this SQLite file (`yihu run` took it already)
        self._sqlite_lock = hold(self.db.url)
        n = self.node
        t = self.clock.seconds()
        yield self.db.run(sql.register_tx, n.name, n.host, n.pid, from_seconds(t), n.timeout_s, self._gone)
        n.last_ok = t
        log.info("node {node} registered (host {host}, pid {pid}); heartbeat every {hb:g} s, dead after {to:g} s",
                 node=n.name, host=n.host, pid=n.pid, hb=n.heartbeat_s, to=n.timeout_s)
        n.registered.callback(n)
        if not self.running:          # stopped while registering: stopService records the stop
            return
        self._loop = task.LoopingCall(self.beat)
        self._loop.clock = self.clock
        self._loop.start(n.heartbeat_s, now=True)

    def _gone(self, host: str, pid: int) -> bool:
        return self.process_gone(self.node.host)(host, pid)

    @staticmethod
    def process_gone(my_host: str):
        """gone(host, pid): the name's holder ran on this machine and its process no longer runs
        (killed -9, then restarted): no need to wait node_timeout_s for its heartbeat to age."""
        def gone(host: str, pid: int) -> bool:
            if host != my_host or pid == os.getpid():
                return False
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except OSError:
                return False
            return False
        return gone

    def beat(self) -> defer.Deferred | None:
        """One heartbeat (skipped while the previous one is in flight)."""
        n = self.node
        if self._beating is not None or n.lost is not None:
            return self._beating
        t = self.clock.seconds()
        try:
            modems = self.modems()
        except Exception:  # noqa: BLE001 - a count is a nicety; the heartbeat is not
            modems = None
        d = self.db.run(_heartbeat_tx, n.name, n.host, n.pid, from_seconds(t), modems, n.timeout_s)

        def done(result):
            ours, rows = result
            if not ours:
                n.lost = (f"node {n.name}: the nodes row is no longer ours (declared dead, then taken by "
                          "another process or stopped); this node claims no more work")
                log.critical("{why}", why=n.lost)
            else:
                if n.failure is not None:
                    log.info("node {node}: heartbeat committed again", node=n.name)
                n.last_ok, n.failure = t, None
            self._seen(rows, t)

        def failed(f):
            n.failure = f.getErrorMessage().splitlines()[0] if f.getErrorMessage() else f.type.__name__
            log.error("node {node}: heartbeat not committed: {err}", node=n.name, err=n.failure)

        def over(_):
            self._beating = None
        self._beating = d          # before the callbacks: a failure may fire at once
        d.addCallbacks(done, failed).addBoth(over)
        return d

    def _seen(self, rows, t: float) -> None:
        peers, alive = [], 0
        for r in rows:
            age = max(0.0, t - utc(r.heartbeat_at).timestamp())
            up = r.stopped_at is None and age < self.node.timeout_s
            alive += up
            peers.append((r.name, up, age, r.host))
            metrics.NODE_HEARTBEAT_AGE.labels(node=r.name).set(age)
        metrics.NODES_ALIVE.set(alive)
        self.node.peers = peers

    def stopService(self):
        super().stopService()
        self.state = "stopped"
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        n = self.node
        # a stop during the registration (SIGTERM right after start) waits for it, then records the stop
        registering = self._registering if self._registering is not None else defer.succeed(None)
        d = defer.Deferred()
        registering.addBoth(lambda r: (d.callback(None), r)[1])
        d.addCallback(lambda _: self._beating)

        def stop(_):
            if n.last_ok is None or n.lost is not None:
                return None
            return self.db.run(sql.stop_tx, n.name, from_seconds(self.clock.seconds()))
        d.addBoth(stop)
        d.addCallbacks(lambda _: log.info("node {node}: stopped (its work is free for the other nodes)", node=n.name),
                       lambda f: log.error("node {node}: stop not recorded ({err}); the others take its work "
                                           "after {to:g} s", node=n.name, err=f.getErrorMessage(), to=n.timeout_s))
        d.addBoth(lambda _: self._unlock())
        return d

    def _unlock(self) -> None:
        """A gateway stopped inside a longer process (tests, `yihu drill`) lets go of the SQLite lock
        it took; under `yihu run` the command holds it until the process ends."""
        if self._sqlite_lock is not None:
            from gateway.cluster.sqlite_lock import release
            release(self._sqlite_lock)
            self._sqlite_lock = None

    def health(self):
        if self.state != "up":
            return super().health()
        n = self.node
        if n.lost is not None:
            mine = PartHealth("node", False, n.lost)
        elif n.failure is not None:
            mine = PartHealth("node", False, f"node {n.name}: heartbeat not committed: {n.failure}")
        elif not n.alive:
            mine = PartHealth("node", False, f"node {n.name}: no heartbeat committed for "
                                             f"{self.clock.seconds() - (n.last_ok or 0):.0f} s")
        else:
            mine = PartHealth("node", True, f"{n.name} on {n.host}, heartbeat "
                                            f"{self.clock.seconds() - n.last_ok:.1f} s ago")
        seen = ", ".join(f"{name} {'alive' if up else 'dead'}" + ("" if up else f" ({age:.0f} s)")
                         for name, up, age, _host in n.peers) or "none yet"
        # Another node dead is news, not this node's fault: never turns /health red.
        return [mine, PartHealth("nodes", True, seen, essential=False)]
