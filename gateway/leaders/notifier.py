"""The leaders' notifier: every `leaders.sweep_seconds` on the injected clock, write the news due
(leaders/store.py) and hand what is queued to the SMS outbox.  One sweep at a time."""
from __future__ import annotations

from twisted.internet import defer, task
from twisted.logger import Logger

from gateway.escalation.config import EscalationConfig
from gateway.leaders import store
from gateway.leaders.config import LeadersSection
from gateway.orders.times import now

log = Logger()


class LeaderNotifier:
    def __init__(self, db, clock, outbox, rules: LeadersSection = LeadersSection(),
                 cfg: EscalationConfig = EscalationConfig()):
        self.db, self.clock, self.outbox, self.rules, self.cfg = db, clock, outbox, rules, cfg
        self._loop: task.LoopingCall | None = None
        self._running: defer.Deferred | None = None

    def start(self):
        self._loop = task.LoopingCall(self.sweep)
        self._loop.clock = self.clock
        self._loop.start(self.rules.sweep_seconds, now=True).addErrback(
            lambda f: log.failure("leaders' notifier stopped", f))

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return self._running

    def sweep(self):
        """Deferred firing when this sweep is done (a sweep already running is joined, not doubled)."""
        if self._running is None:
            self._running = self._sweep()
            self._running.addErrback(lambda f: log.failure("leaders' notifier: sweep failed; next one retries", f))
            self._running.addBoth(self._done)
        d = defer.Deferred()
        self._running.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    def _done(self, _):
        self._running = None

    @defer.inlineCallbacks
    def _sweep(self):
        t = now(self.clock)
        n = yield self.db.run(store.sweep_tx, t, self.rules, self.cfg)
        if n:
            log.info("leaders: {n} notifications queued", n=n)
        rows = yield self.db.run(store.queued_tx)
        handed = []
        for r in rows:
            try:
                yield self.outbox.enqueue(r.phone, r.text, purpose="leader", order_id=r.order_id)
                handed.append(r.id)
            except Exception as e:  # noqa: BLE001 - stays queued; the next sweep tries again
                log.error("leaders: {kind} notification {id} to {phone} not queued: {e}", kind=r.kind, id=r.id,
                          phone=r.phone, e=e)
        yield self.db.run(store.mark_handed_tx, handed, now(self.clock))
