"""Sending an order: commit it whole (teams, deliveries, every escalation step, its event), then fan out."""
from __future__ import annotations

import random
from dataclasses import replace

from twisted.internet import defer
from twisted.logger import Logger

from gateway import metrics
from gateway.escalation.config import EscalationConfig
from gateway.orders import store
from gateway.orders.order import CreatedOrder, OrderRequest
from gateway.orders.times import now

log = Logger()


class OrderService:
    def __init__(self, db, clock, fanout, escalation, cfg: EscalationConfig = EscalationConfig(),
                 rng: random.Random | None = None, *, drills=None, drill_mode: bool = False):
        self.db, self.clock, self.fanout, self.escalation, self.cfg = db, clock, fanout, escalation, cfg
        self.drills = drills              # DrillOrders: learns each drill order as it is created
        self.drill_mode = drill_mode      # the gateway runs on the emulators: every order is a drill
        self.rng = rng or random.SystemRandom()
        self._lock = defer.DeferredLock()    # codes are chosen one order at a time: never two alike

    def send(self, req: OrderRequest, create_tx=store.create_order_tx):
        """Deferred[CreatedOrder], fired once the order is committed (not yet delivered).
        `create_tx` (same arguments as store.create_order_tx) lets the API add its idempotency rows."""
        return self._lock.run(self._send, req, create_tx)

    @defer.inlineCallbacks
    def _send(self, req: OrderRequest, create_tx=store.create_order_tx):
        if self.drill_mode and not req.drill:
            req = replace(req, drill=True)
        created: CreatedOrder = yield self.db.run(create_tx, req, now(self.clock), self.cfg, self.rng)
        if created.existing:
            log.info("order {code}: idempotency key seen before; not sent again", code=created.code)
            return created
        metrics.ORDERS_CREATED.labels(drill=str(req.drill).lower()).inc()
        if self.drills is not None:
            self.drills.learn(created.order_id, req.drill)
        if self.escalation is not None:
            self.escalation.schedule_many(created.timers)
        log.info("order {code} ({ref}) committed for {n} teams", code=created.code, ref=req.incident_ref,
                 n=len(created.team_ids))
        if self.fanout is not None:
            self.fanout.send(created.order_id).addErrback(
                lambda f: log.failure("order {code}: fan-out failed; the sweep retries", f, code=created.code))
        return created
