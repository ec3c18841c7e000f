"""What the IVR reads of the center's data: an order's text and rule, and whether a phone is on
the roster (read-only: orders belong to the order engine, the roster to the directory)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from twisted.internet.defer import Deferred

from gateway.mode import drill_text
from gateway.storage.schema import member_phones, orders


@dataclass(frozen=True)
class OrderBrief:
    code: str
    text: str
    rule: str            # same_township / leaving_city
    major: bool = False  # teams on scene report the situation (key 5 records a spoken report)

    @property
    def leaving_city(self) -> bool:
        return self.rule == "leaving_city"


class OrderBook:
    """Reads open orders by code (read-only; the orders belong to the order engine)."""

    def __init__(self, db):
        self.db = db

    def brief(self, code: str) -> Deferred:
        """Deferred[OrderBrief | None] for the newest open order with this code."""
        return self.db.run(_brief, code)

    def known_phone(self, e164: str) -> Deferred:
        """Deferred[bool]: is this number on the roster of any team?"""
        return self.db.run(_known_phone, e164)


def _brief(conn, code: str):
    row = conn.execute(select(orders.c.code, orders.c.text, orders.c.rule, orders.c.major, orders.c.drill)
                       .where(orders.c.code == code, orders.c.state == "open")
                       .order_by(orders.c.created_at.desc()).limit(1)).first()
    # a drill order is read out as one: "【演练】" first
    return OrderBrief(row.code, drill_text(row.text, row.drill), row.rule, bool(row.major)) if row else None


def _known_phone(conn, e164: str) -> bool:
    return conn.execute(select(member_phones.c.id).where(member_phones.c.e164 == e164).limit(1)).first() is not None
