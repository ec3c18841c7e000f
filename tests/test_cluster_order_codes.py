"""Order codes unique among open orders in the database, and chosen again on a conflict: two
nodes creating orders at the same moment, forced to pick the same code."""
from __future__ import annotations

import random
import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.escalation.config import EscalationConfig
from gateway.orders.order import OrderRequest, Target
from gateway.orders.store import create_order_tx
from gateway.storage.pool import make_engine
from gateway.storage.schema import orders
from tests._orders_rig import seed_directory_tx

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


def order_row(code, state="open", ref="INC"):
    return dict(code=code, incident_ref=ref, kind="rescue", text="t", rule="same_township", voice=False,
                state=state, created_at=NOW)


@pytest.fixture
def engine(migrated_url):
    e = make_engine(migrated_url)
    yield e
    e.dispose()


def test_the_database_refuses_two_open_orders_with_one_code(engine):
    with engine.begin() as conn:
        conn.execute(insert(orders).values(**order_row("0427", state="closed", ref="OLD")))
        conn.execute(insert(orders).values(**order_row("0427")))      # a closed order's code is free again
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(insert(orders).values(**order_row("0427", ref="SECOND")))
    with engine.begin() as conn:
        conn.execute(update(orders).where(orders.c.incident_ref == "INC").values(state="closed"))
        conn.execute(insert(orders).values(**order_row("0427", ref="THIRD")))
        codes = conn.execute(select(orders.c.incident_ref, orders.c.state).where(orders.c.code == "0427")
                             .order_by(orders.c.id)).all()
    assert [tuple(r) for r in codes] == [("OLD", "closed"), ("INC", "closed"), ("THIRD", "open")]


class ForcedRng(random.Random):
    """Both creators draw `code` first, and only once both have looked at the open orders."""

    def __init__(self, seed, code, barrier):
        super().__init__(seed)
        self.code, self.barrier, self.draws = code, barrier, 0

    def randrange(self, *a, **kw):
        self.draws += 1
        if self.draws == 1:
            self.barrier.wait()
            return self.code
        return super().randrange(*a, **kw)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_creators_forced_to_the_same_code_both_succeed_with_different_codes(engine):
    with engine.begin() as conn:
        seed_directory_tx(conn, 2)
    barrier = threading.Barrier(2, timeout=20)
    rngs = {team: ForcedRng(i, 427, barrier) for i, team in enumerate(("PUB-01", "PUB-02"))}
    created, errors = {}, []

    def creator(team):
        try:
            with engine.begin() as conn:
                req = OrderRequest(f"INC-{team}", "rescue", "白塔镇山体滑坡，速派人员", Target("teams", (team,)),
                                   "same_township")
                created[team] = create_order_tx(conn, req, NOW, EscalationConfig(), rngs[team])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=creator, args=(t,)) for t in rngs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with engine.begin() as conn:
        rows = conn.execute(select(orders.c.incident_ref, orders.c.code, orders.c.state)).all()
    codes = {r.incident_ref: r.code for r in rows}
    assert len(rows) == 2 and len(set(codes.values())) == 2
    assert "0427" in codes.values()
    # the one that lost the race drew again; each order got the code the database holds
    assert sorted(r.draws for r in rngs.values()) == [1, 2]
    assert {created[t].code for t in created} == set(codes.values())
