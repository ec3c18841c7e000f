"""The CAP intake: a document (from the API or the inbox directory) -> one committed unit of work
(with its events, in the event log) -> the new order's timers and fan-out (durable before told)."""
from __future__ import annotations

import random

from sqlalchemy.exc import IntegrityError
from twisted.internet import defer
from twisted.logger import Logger

from gateway import metrics
from gateway.cap import store
from gateway.cap.config import CapSection
from gateway.escalation.config import EscalationConfig
from gateway.orders.times import now

log = Logger()


class CapIntake:
    def __init__(self, db, clock, orders, cfg: CapSection, esc: EscalationConfig, verify=None,
                 rng: random.Random | None = None):
        self.db, self.clock, self.orders = db, clock, orders
        self.cfg, self.esc, self.verify = cfg, esc, verify
        self.rng = rng or random.SystemRandom()

    def _drill(self) -> bool:
        """In drill mode every order is a drill, CAP's too (as OrderService.send makes them)."""
        return bool(getattr(self.orders, "drill_mode", False))

    def take(self, raw: bytes, source: str, truncated: bool = False) -> defer.Deferred:
        """Deferred[store.Outcome], fired after COMMIT (its events committed with it)."""
        return self.orders.run_locked(self._take, bytes(raw), source, truncated)

    @defer.inlineCallbacks
    def _take(self, raw, source, truncated):
        try:
            out = yield self._commit(raw, source, truncated)
        except IntegrityError:
            # The same alert committed at the same moment by another process: it is a duplicate now.
            out = yield self._commit(raw, source, truncated)
        self._after_commit(out, source)
        return out

    def _commit(self, raw, source, truncated):
        return self.db.run(store.take_alert_tx, raw, source, now(self.clock), self.cfg, self.esc, self.rng,
                           self.verify, truncated, self._drill())

    def _after_commit(self, out: store.Outcome, source: str) -> None:
        metrics.CAP_DOCUMENTS.labels(out.state, out.action or "none").inc()
        if out.state == "refused":
            log.warn("CAP document #{id} from {source} refused: {element}: {reason}", id=out.alert_id,
                     source=source, element=out.element, reason=out.reason)
        else:
            log.info("CAP alert {key} from {source}: {state}, {action}", key=out.alert_key, source=source,
                     state=out.state, action=out.action)
        for created, req in out.created:
            self.orders.announce(created, req)
        for order_id, code in out.resend:
            self.orders.resend(order_id, code)

    @defer.inlineCallbacks
    def confirm(self, proposal_id: int, by: str):
        """A dispatcher confirms a proposal: Deferred[(CreatedOrder, OrderRequest)] after COMMIT."""
        created, req = yield self.orders.run_locked(
            self.db.run, store.confirm_proposal_tx, proposal_id, by, now(self.clock), self.esc, self.rng,
            self._drill())
        self.orders.announce(created, req)
        return created, req
