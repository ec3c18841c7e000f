"""The order domain wired together, for the gateway service to start and stop.

    domain = OrderDomain(reactor, db, outbox, caller, cfg)
    yield domain.start()                 # timers rebuilt from the database, fan-out sweep running
    domain.orders.send(OrderRequest(...))   # dispatch API / in-process senders
    domain.feedback                      # IInboundSmsSink for the SMS layer, IKeypadSink for the IVR
    domain.stop()
"""
from __future__ import annotations

from twisted.internet import defer

from gateway.escalation.config import EscalationConfig
from gateway.escalation.engine import EscalationEngine
from gateway.feedback.engine import FeedbackEngine
from gateway.orders.fanout import FanOut
from gateway.orders.service import OrderService


class OrderDomain:
    def __init__(self, clock, db, outbox, caller, cfg: EscalationConfig | None = None):
        cfg = cfg or EscalationConfig()
        self.cfg = cfg
        self.escalation = EscalationEngine(db, clock, outbox, caller, cfg)
        self.fanout = FanOut(db, clock, outbox, caller, cfg)
        self.orders = OrderService(db, clock, self.fanout, self.escalation, cfg)
        self.feedback = FeedbackEngine(db, outbox, self.escalation, cfg)

    @defer.inlineCallbacks
    def start(self):
        self._stopped = False
        yield self.escalation.start()
        if not self._stopped:             # not after a stop that came while the engine loaded
            yield self.fanout.start()

    def stop(self):
        self._stopped = True
        self.fanout.stop()
        self.escalation.stop()
