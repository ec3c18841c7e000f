"""Hands committed deliveries to the SMS outbox and the order caller (the outbox pattern).

Order creation only writes deliveries as `queued`; this hands them on.  An SMS delivery stays
`queued` until a modem accepted its first segment (then `sent`, written by the SMS store).  An order
committed by another process (the CLI) or left half-sent by a crash is picked up by the sweep,
so nothing committed is ever silently not sent.
"""
from __future__ import annotations

from twisted.internet import defer, task
from twisted.logger import Logger

from gateway.escalation.config import EscalationConfig
from gateway.orders import store
from gateway.orders.times import now

log = Logger()


class FanOut:
    def __init__(self, db, clock, outbox, caller, cfg: EscalationConfig = EscalationConfig()):
        self.db, self.clock, self.outbox, self.caller, self.cfg = db, clock, outbox, caller, cfg
        self._lock = defer.DeferredLock()      # one claim at a time: no delivery handed twice
        self._loop: task.LoopingCall | None = None
        self._calls: set[defer.Deferred] = set()

    @defer.inlineCallbacks
    def start(self):
        n = yield self.db.run(store.requeue_handing_tx, now(self.clock))
        if n:
            log.warn("fan-out: {n} deliveries were being handed at shutdown; handing them again", n=n)
        self._loop = task.LoopingCall(self._sweep)
        self._loop.clock = self.clock
        self._loop.start(self.cfg.refresh_seconds, now=True)

    def _sweep(self):
        """One sweep; a failure is logged and the next sweep tries again (a sweep that died
        would leave orders committed from the CLI unsent)."""
        d = defer.maybeDeferred(self.send)
        d.addErrback(lambda f: log.failure("fan-out sweep failed; retrying in {s} s", f, s=self.cfg.refresh_seconds))
        return d

    def stop(self):
        if self._loop and self._loop.running:
            self._loop.stop()

    def send(self, order_id: int | None = None):
        """Hand every queued delivery (of one order, or all); Deferred fires when all are handed."""
        return self._lock.run(self._send, order_id)

    @defer.inlineCallbacks
    def _send(self, order_id):
        if order_id is None:       # the periodic sweep: also take in the network's delivery reports
            yield self.db.run(store.delivered_by_sms_tx, now(self.clock))
        handoffs = yield self.db.run(store.claim_queued_deliveries_tx, order_id, now(self.clock), self.cfg)
        results = yield defer.DeferredList([self._hand(h) for h in handoffs], consumeErrors=True)
        return sum(1 for ok, _ in results if ok)

    @defer.inlineCallbacks
    def _hand(self, h: store.Handoff):
        if h.channel == "sms":
            try:
                msg_id = yield self.outbox.enqueue(h.phone, h.text, purpose="order", order_id=h.order_id,
                                                   delivery_id=h.delivery_id)
            except Exception as e:   # noqa: BLE001 - the outbox failing must not lose the delivery
                log.error("order {code}: SMS to {phone} not queued ({e}); will retry", code=h.order_code,
                          phone=h.phone, e=e)
                yield self.db.run(store.mark_delivery_tx, h.delivery_id, "queued", now(self.clock), f"retry: {e}")
                raise
            # Still `queued`: in the outbox, not yet accepted by a modem.  The SMS store marks it
            # `sent` in the transaction that records the modem's +CMGS for its first segment.
            yield self.db.run(store.mark_delivery_tx, h.delivery_id, "queued", now(self.clock),
                              f"sms {msg_id} in the outbox", only_from=("handing",), handed=True)
        else:
            d = defer.maybeDeferred(self.caller.call_order, h.order_code, h.phone, order_id=h.order_id,
                                    team_id=h.team_id, member_id=h.member_id, purpose="order",
                                    delivery_id=h.delivery_id)
            yield self.db.run(store.mark_delivery_tx, h.delivery_id, "calling", now(self.clock))
            self._track(d, h.delivery_id, h.order_code, h.phone)

    def _track(self, d, delivery_id, code, phone):
        """The call's outcome arrives later (answered / busy / no_answer / failed): record it."""
        def done(outcome):
            return self.db.run(store.record_call_outcome_tx, delivery_id, str(outcome), now(self.clock))

        def failed(f):
            log.error("order {code}: call to {phone} failed: {f}", code=code, phone=phone, f=f.getErrorMessage())
            return self.db.run(store.record_call_outcome_tx, delivery_id, "failed", now(self.clock))
        d.addCallbacks(done, failed)
        d.addErrback(lambda f: log.failure("order {code}: recording call outcome", f, code=code))
        self._calls.add(d)
        d.addBoth(lambda r: (self._calls.discard(d), r)[1])

    def settle(self):
        """For tests: wait for outcomes of calls in flight."""
        return defer.DeferredList(list(self._calls))
