"""Drill orders: the center's assembly drills run on the real phones, so an order may be marked
drill.  Every SMS and spoken message of it carries 【演练】 (gateway.mode.drill_text) and its
figures are kept apart from real incidents (lists, summary, board, metrics, events).

`DrillOrders` knows which orders are drills: all of them loaded at start (drills are few),
learnt as orders are created here or handed on by the fan-out (orders from the CLI), and looked
up in the database for anything else.  `DrillLabelledOutbox` sits between the domain and the
SMS bank, so that reminders, confirmations and supervisor alerts are labelled in one place.
"""
from __future__ import annotations

from sqlalchemy import select
from twisted.internet import defer
from zope.interface import implementer

from gateway.interfaces import ISmsOutbox
from gateway.mode import drill_text
from gateway.storage.schema import orders


def _drill_ids_tx(conn) -> list[int]:
    return list(conn.execute(select(orders.c.id).where(orders.c.drill.is_(True))).scalars())


def _is_drill_tx(conn, order_id: int) -> bool:
    return bool(conn.execute(select(orders.c.drill).where(orders.c.id == order_id)).scalar())


class DrillOrders:
    def __init__(self, db):
        self.db = db
        self._known: dict[int, bool] = {}

    @defer.inlineCallbacks
    def start(self):
        for oid in (yield self.db.run(_drill_ids_tx)):
            self._known[oid] = True

    def learn(self, order_id: int, drill: bool) -> None:
        self._known[order_id] = bool(drill)

    def is_drill(self, order_id) -> bool:
        """Synchronous (for events): every drill order is known from start, creation or hand-off."""
        return self._known.get(order_id, False) if order_id is not None else False

    def lookup(self, order_id: int) -> defer.Deferred:
        if order_id in self._known:
            return defer.succeed(self._known[order_id])
        d = self.db.run(_is_drill_tx, order_id)
        d.addCallback(lambda drill: (self.learn(order_id, drill), drill)[1])
        return d


@implementer(ISmsOutbox)
class DrillLabelledOutbox:
    """Every SMS about a drill order starts with 【演练】, whoever sends it."""

    def __init__(self, outbox, drills: DrillOrders):
        self.outbox, self.drills = outbox, drills

    def enqueue(self, phone, text, *, purpose, order_id=None, delivery_id=None):
        def send(drill):
            return self.outbox.enqueue(phone, drill_text(text, drill), purpose=purpose, order_id=order_id,
                                       delivery_id=delivery_id)
        if order_id is None:
            return send(False)
        return self.drills.lookup(order_id).addCallback(send)

    def stage_tx(self, conn, now, phone, text, *, purpose, order_id=None, delivery_id=None):
        """The same label inside another part's transaction (transactional outbox): the flag is
        read there, from the order's own row, when not known yet."""
        drill = order_id is not None and (self.drills.is_drill(order_id) or _is_drill_tx(conn, order_id))
        return self.outbox.stage_tx(conn, now, phone, drill_text(text, drill), purpose=purpose, order_id=order_id,
                                    delivery_id=delivery_id)

    def stage_many_tx(self, conn, items: list[dict]) -> list[dict]:
        """stage_many_tx with each text labelled as stage_tx labels it."""
        labelled = []
        for it in items:
            order_id = it.get("order_id")
            drill = order_id is not None and (self.drills.is_drill(order_id) or _is_drill_tx(conn, order_id))
            labelled.append(dict(it, text=drill_text(it["text"], drill)))
        if hasattr(type(self.outbox), "stage_many_tx"):
            return self.outbox.stage_many_tx(conn, labelled)
        return [self.outbox.stage_tx(conn, it["now"], it["phone"], it["text"], purpose=it["purpose"],
                                     order_id=it.get("order_id"), delivery_id=it.get("delivery_id"))
                for it in labelled]

    def __getattr__(self, name):        # the bank's other methods (inbound, slots ...) pass through
        return getattr(self.outbox, name)
