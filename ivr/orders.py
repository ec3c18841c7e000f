"""What the IVR reads of the center's data: an order's text and rule, and whether a phone is on
the roster (read-only: orders belong to the order engine, the roster to the directory)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from twisted.internet.defer import Deferred

from gateway.mode import drill_text
from gateway.storage.bulk import among_named, built_once
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
    """Reads open orders by code (read-only; the orders belong to the order engine).

    Hundreds of order calls answered within seconds each want their order read out: the codes
    asked for while a read is in flight are read together by the next one (one query), so the
    calls do not queue one transaction each for the database threads."""

    MAX_CODES = 500

    def __init__(self, db):
        self.db = db
        self._waiting: dict[str, list[Deferred]] = {}
        self._reading = False

    def brief(self, code: str) -> Deferred:
        """Deferred[OrderBrief | None] for the newest open order with this code."""
        d = Deferred()
        self._waiting.setdefault(code, []).append(d)
        if not self._reading:
            self._read_next()
        return d

    def _read_next(self, _=None):
        if not self._waiting:
            self._reading = False
            return
        self._reading = True
        codes = list(self._waiting)[:self.MAX_CODES]
        batch = {c: self._waiting.pop(c) for c in codes}

        def read(found):
            for code, ds in batch.items():
                for d in ds:
                    d.callback(found.get(code))

        def failed(f):
            for ds in batch.values():
                for d in ds:
                    d.errback(f)
        try:
            d = self.db.run(_briefs, codes)
        except Exception as e:  # noqa: BLE001 - the pool is not running: each caller is told
            from twisted.internet.defer import fail
            d = fail(e)
        d.addCallbacks(read, failed).addBoth(self._read_next)

    def known_phone(self, e164: str) -> Deferred:
        """Deferred[bool]: is this number on the roster of any team?"""
        return self.db.run(_known_phone, e164)


def _brief(conn, code: str):
    row = conn.execute(select(orders.c.code, orders.c.text, orders.c.rule, orders.c.major, orders.c.drill)
                       .where(orders.c.code == code, orders.c.state == "open")
                       .order_by(orders.c.created_at.desc()).limit(1)).first()
    # a drill order is read out as one: "【演练】" first
    return OrderBrief(row.code, drill_text(row.text, row.drill), row.rule, bool(row.major)) if row else None


def _briefs(conn, codes: list[str]) -> dict[str, OrderBrief]:
    """_brief for several codes in one query: {code: brief} of those with an open order."""
    out: dict[str, OrderBrief] = {}
    for row in conn.execute(built_once(conn, _open_by_codes), {"codes": codes}):
        if row.code not in out:         # the newest open order with the code
            out[row.code] = OrderBrief(row.code, drill_text(row.text, row.drill), row.rule, bool(row.major))
    return out


def _open_by_codes(conn):
    return (select(orders.c.code, orders.c.text, orders.c.rule, orders.c.major, orders.c.drill)
            .where(among_named(conn, orders.c.code, "codes"), orders.c.state == "open")
            .order_by(orders.c.created_at.desc(), orders.c.id.desc()))


def _known_phone(conn, e164: str) -> bool:
    return conn.execute(select(member_phones.c.id).where(member_phones.c.e164 == e164).limit(1)).first() is not None
