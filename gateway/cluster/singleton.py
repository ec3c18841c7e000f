"""A singleton part held by a lease (gateway/cluster/leases.py): runs on one node at a time.

Every `cluster.heartbeat_s` on the injected clock the node tries the lease: renewed while ours,
taken once the holder let `until` pass (dead, or stopped cleanly: a clean stop releases it), so a
dead holder's singleton moves within node_timeout_s (+ one try).  On taking it the child part is
started; on losing it, stopped.  Never two holders: `until` is now + node_timeout_s at each renewal,
and a holder that has not renewed by `until - heartbeat_s` (the database unreachable, the node
declared not alive) stops its child itself, before anyone may take the lease.
"""
from __future__ import annotations

from typing import Callable

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from gateway import metrics
from gateway.cluster import leases as sql
from gateway.health import PartHealth
from gateway.orders.times import from_seconds
from gateway.service import Part

log = Logger()


class LeasedPart(Part, service.Service):
    """`start()` / `stop()` of the child run only while this node holds lease `lease`."""

    def __init__(self, clock, db, node, lease: str, start: Callable, stop: Callable, *, what: str = ""):
        self.clock, self.db, self.node, self.lease = clock, db, node, lease
        self.name = f"lease {lease}"
        self.what = what or lease
        self._start, self._stop = start, stop
        self.held = False
        self.holder: str | None = None
        self.until = None
        self.generation = 0
        self.child_error: str | None = None
        self._loop: task.LoopingCall | None = None
        self._trying: defer.Deferred | None = None
        self._expiry = None                       # IDelayedCall: stop the child before `until`
        self._child = defer.succeed(None)         # start/stop of the child, one after the other
        metrics.LEASE_HELD.labels(lease=lease).set(0)

    @property
    def margin(self) -> float:
        return self.node.heartbeat_s

    # --- lifecycle -------------------------------------------------------------------------------
    def startService(self):
        super().startService()
        # up once the node is registered and the first try is done (held or standby: both fine)
        d = defer.Deferred()
        self.node.registered.addCallback(self._begin, d)
        self._track_start(d)

    def _begin(self, node, ready: defer.Deferred):
        if not self.running:
            ready.callback(None)
            return node
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self.clock
        first = self._loop.start(self.node.heartbeat_s, now=False)
        first.addErrback(lambda f: log.failure("{lease}: lease loop stopped", f, lease=self.lease))

        def tried(_):
            # Fail fast: a singleton taken at start that cannot start stops the process (exit 2),
            # like any other part; later failures show in /health and the lease is released.
            d = defer.Deferred()

            def settled(r):
                if self.child_error is not None:
                    d.errback(RuntimeError(f"{self.what}: {self.child_error}"))
                else:
                    d.callback(None)
                return r
            self._child.addBoth(settled)
            return d
        self.tick().addCallback(tried).chainDeferred(ready)
        return node

    def stopService(self):
        super().stopService()
        self.state = "stopped"
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        d = self._trying or defer.succeed(None)

        def release(_):
            if not self.held:
                return self._child
            self._lose("this node stops", released=True)
            return self._child.addCallback(lambda _: self.db.run(sql.release_tx, self.lease, self.node.name,
                                                                  from_seconds(self.clock.seconds())))
        d = d.addBoth(release)
        d.addErrback(lambda f: log.error("{lease}: not released ({err}); the others take it once it expires",
                                         lease=self.lease, err=f.getErrorMessage()))
        return d

    # --- trying the lease -------------------------------------------------------------------------
    def tick(self) -> defer.Deferred:
        if self._trying is not None:
            return self._trying
        if not self.node.alive:
            if self.held:
                self._lose(f"node {self.node.name} is not alive")
            return defer.succeed(None)
        t = self.clock.seconds()
        d = self.db.run(sql.acquire_tx, self.lease, self.node.name, from_seconds(t), self.node.timeout_s)

        def done(state: sql.LeaseState):
            self.holder, self.until, self.generation = state.holder, state.until, state.generation
            if not self.running:
                return
            if state.held:
                self._arm_expiry(t + self.node.timeout_s - self.margin)
                if not self.held or state.taken:
                    self._take(state)
            elif self.held:
                self._lose(f"held by node {state.holder}")

        def failed(f):
            log.error("{lease}: trying the lease failed: {err}{more}", lease=self.lease, err=f.getErrorMessage(),
                      more="; the singleton stops if not renewed in time" if self.held else "")

        def over(_):
            self._trying = None
        self._trying = d
        d.addCallbacks(done, failed).addBoth(over)
        return d

    def _arm_expiry(self, at: float) -> None:
        if self._expiry is not None and self._expiry.active():
            self._expiry.reset(max(0.0, at - self.clock.seconds()))
        else:
            self._expiry = self.clock.callLater(max(0.0, at - self.clock.seconds()), self._expired)

    def _expired(self):
        self._expiry = None
        if self.held:
            self._lose("not renewed in time (stopped before the lease expires)")

    def _take(self, state: sql.LeaseState) -> None:
        was = self.held
        self.held, self.child_error = True, None
        metrics.LEASE_HELD.labels(lease=self.lease).set(1)
        if not was:
            metrics.LEASE_CHANGES.labels(lease=self.lease).inc()
            log.info("{lease}: taken by node {node} (generation {gen}); {what} runs here", lease=self.lease,
                     node=self.node.name, gen=state.generation, what=self.what)
            self._child = self._child.addBoth(lambda _: defer.maybeDeferred(self._start))
            self._child.addErrback(self._child_failed)

    def _child_failed(self, f):
        self.child_error = f.getErrorMessage()
        log.failure("{lease}: {what} failed to start; the lease is released", f, lease=self.lease, what=self.what)
        if self.held:
            self._lose("its part failed to start", released=True)
            self.db.run(sql.release_tx, self.lease, self.node.name, from_seconds(self.clock.seconds())).addErrback(
                lambda _: None)

    def _lose(self, why: str, released: bool = False) -> None:
        if not self.held:
            return
        self.held = False
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        metrics.LEASE_HELD.labels(lease=self.lease).set(0)
        metrics.LEASE_CHANGES.labels(lease=self.lease).inc()
        (log.info if released else log.warn)("{lease}: lost by node {node} ({why}); {what} stops here",
                                             lease=self.lease, node=self.node.name, why=why, what=self.what)
        self._child = self._child.addBoth(lambda _: defer.maybeDeferred(self._stop))
        self._child.addErrback(lambda f: log.failure("{lease}: stopping {what} failed", f, lease=self.lease,
                                                     what=self.what))

    # --- health ----------------------------------------------------------------------------------
    def health(self):
        if self.state != "up":
            return super().health()
        if self.child_error is not None:
            return PartHealth(self.name, False, f"{self.what} failed to start: {self.child_error}")
        if self.held:
            return PartHealth(self.name, True, f"held by this node ({self.node.name}, generation {self.generation}): "
                                               f"{self.what} runs here")
        who = f"node {self.holder}" if self.holder else "nobody"
        return PartHealth(self.name, True, f"standby: held by {who}" +
                          (f" until {self.until:%H:%M:%S}" if self.until is not None else ""), essential=False)
