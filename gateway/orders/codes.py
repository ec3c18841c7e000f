"""Order codes: four digits people can type, unique among open orders.

Unique among ALL open orders (not only among one phone's), which is stronger than the rule and
simpler to keep: a code then names one open order whoever types it.  Random rather than
sequential, so that a code mistyped by one digit rarely names another live order.
"""
from __future__ import annotations

import random

from sqlalchemy import select

from gateway.orders.grammar import CODE_LENGTH
from gateway.storage.schema import orders

SPACE = 10 ** CODE_LENGTH


class NoCodeLeft(RuntimeError):
    pass


def choose_code(conn, rng: random.Random) -> str:
    used = set(conn.execute(select(orders.c.code).where(orders.c.state == "open")).scalars())
    if len(used) >= SPACE * 0.9:
        raise NoCodeLeft(f"{len(used)} open orders: close some before sending more")
    while True:
        code = f"{rng.randrange(SPACE):0{CODE_LENGTH}d}"
        if code not in used:
            return code
