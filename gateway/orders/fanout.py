"""Hands committed deliveries to the SMS outbox and the order caller (the outbox pattern).

Order creation only writes deliveries as `queued`; this writes, in ONE transaction per sweep,
each delivery's new state together with what it causes (the SMS message and its segments, or
the first call attempt), then lets the bank and the caller act on the committed rows.  An SMS
delivery stays `queued` (handed: `handed_at`) until a modem accepted its first segment (then
`sent`, written by the SMS store).  An order committed by another process (the CLI) is picked up
by the sweep; after a crash the bank and the caller resume from the rows, so nothing is sent
twice or silently not sent.
"""
from __future__ import annotations

from twisted.internet import defer, task
from twisted.logger import Logger

from gateway import metrics
from gateway.cluster.claims import Claimer
from gateway.escalation.config import EscalationConfig
from gateway.orders import store
from gateway.orders.times import now

log = Logger()


class FanOut:
    def __init__(self, db, clock, outbox, caller, cfg: EscalationConfig = EscalationConfig(), *,
                 claimer: Claimer = Claimer()):
        self.db, self.clock, self.outbox, self.caller, self.cfg = db, clock, outbox, caller, cfg
        self.claimer = claimer          # this node: the deliveries it hands on are written as its own
        self._lock = defer.DeferredLock()      # one claim at a time: no delivery handed twice
        self._loop: task.LoopingCall | None = None
        self._stopped = False

    @property
    def running(self) -> bool:
        """Started and not stopped: wake-ups and takeovers act only then."""
        return self._loop is not None and self._loop.running

    @defer.inlineCallbacks
    def start(self):
        self._stopped = False
        yield self._requeue(dead_only=False)
        if self._stopped:        # stopped while requeueing (a gateway that could not start): no loop
            return
        self._loop = task.LoopingCall(self.sweep)
        self._loop.clock = self.clock
        self._loop.start(self.cfg.refresh_seconds, now=True)

    @defer.inlineCallbacks
    def _requeue(self, dead_only: bool):
        n, taken = yield self.db.run(store.requeue_handing_tx, now(self.clock), self.claimer, dead_only)
        if taken:
            metrics.WORK_TAKEN_OVER.labels(kind="delivery").inc(taken)
        if n:
            log.warn("fan-out: {n} deliveries left being handed ({taken} by dead nodes); handing them again",
                     n=n, taken=taken)

    def sweep(self):
        """One sweep; a failure is logged and the next sweep tries again (a sweep that died
        would leave orders committed from the CLI unsent)."""
        d = defer.maybeDeferred(self.send)
        d.addErrback(lambda f: log.failure("fan-out sweep failed; retrying in {s} s", f, s=self.cfg.refresh_seconds))
        return d

    def stop(self):
        self._stopped = True
        if self._loop and self._loop.running:
            self._loop.stop()

    def send(self, order_id: int | None = None):
        """Hand every queued delivery (of one order, or all); Deferred fires when all are handed."""
        return self._lock.run(self._send, order_id)

    @defer.inlineCallbacks
    def _send(self, order_id):
        if order_id is None:       # the periodic sweep: also take in the network's delivery reports
            yield self.db.run(store.delivered_by_sms_tx, now(self.clock))
            yield self._requeue(dead_only=True)       # and a dead node's deliveries
        handed = yield self.db.run(store.hand_deliveries_tx, order_id, now(self.clock), self.cfg,
                                   self.outbox.stage_tx, self.caller.stage_tx, claimer=self.claimer)
        # Committed: the bank and the caller act on the rows (after a crash, they load them).
        self.outbox.adopt(handed.messages)
        if handed.calls:
            self.caller.place_due()
        if handed.refused:
            log.error("fan-out: {n} order SMS refused (text the network cannot carry)", n=handed.refused)
        return len(handed.messages) + handed.calls

    def settle(self):
        """For tests: wait for the order caller's writes in flight."""
        return defer.maybeDeferred(getattr(self.caller, "settle", lambda: None))
