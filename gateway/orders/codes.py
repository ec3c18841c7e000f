"""Order codes: four digits people can type, unique among open orders.

Unique among ALL open orders (not only among one phone's), which is stronger than the rule and
simpler to keep: a code then names one open order whoever types it.  Random rather than
sequential, so that a code mistyped by one digit rarely names another live order.

The database keeps it (a unique index on the codes of open orders, migration 0018): two nodes, or a
node and the CLI, may choose the same code at the same moment; the second insert then fails and
`insert_order` chooses again (a savepoint on PostgreSQL keeps the rest of the transaction).
"""
from __future__ import annotations

import random

from sqlalchemy import select

from gateway.orders.grammar import CODE_LENGTH
from gateway.storage.schema import orders

SPACE = 10 ** CODE_LENGTH


class NoCodeLeft(RuntimeError):
    pass


def choose_code(conn, rng: random.Random, avoid=()) -> str:
    """A code no open order has (`avoid`: codes just found taken by an order not yet visible)."""
    used = set(conn.execute(select(orders.c.code).where(orders.c.state == "open")).scalars()) | set(avoid)
    if len(used) >= SPACE * 0.9:
        raise NoCodeLeft(f"{len(used)} open orders: close some before sending more")
    while True:
        code = f"{rng.randrange(SPACE):0{CODE_LENGTH}d}"
        if code not in used:
            return code


CODE_TRIES = 10


class CodeConflict(RuntimeError):
    pass


def insert_order(conn, values: dict, rng: random.Random) -> tuple[int, str]:
    """Insert the order under a fresh code; on a conflict with an order committed meanwhile, choose
    again (at most CODE_TRIES times).  Returns (order id, code)."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError
    taken: list[str] = []
    for _ in range(CODE_TRIES):
        code = choose_code(conn, rng, taken)
        stmt = insert(orders).values(code=code, **values)
        if conn.dialect.name != "postgresql":
            # SQLite: one writer at a time, and the gateway is its only node; a CLI racing it loses
            # its whole transaction (and says so) rather than half of it.
            return conn.execute(stmt).inserted_primary_key[0], code
        try:
            with conn.begin_nested():
                return conn.execute(stmt).inserted_primary_key[0], code
        except IntegrityError:
            if conn.execute(select(orders.c.id).where(orders.c.code == code, orders.c.state == "open")).first() is None:
                raise             # not the code (e.g. the idempotency key): not ours to retry
            taken.append(code)
    raise CodeConflict(f"no free order code after {CODE_TRIES} tries (codes taken meanwhile: {', '.join(taken)})")
