"""The escalation refresh on PostgreSQL: a step whose id is lower than one already seen, committed
after it (two nodes, or a node and the CLI, creating orders at once), is scheduled at the next
refresh, not found a minute late by the auditor."""
from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest_twisted
from sqlalchemy import select
from twisted.internet import task

from gateway.escalation.config import EscalationConfig
from gateway.escalation.engine import EscalationEngine
from gateway.orders.order import OrderRequest, Target
from gateway.orders.store import create_order_tx
from gateway.storage.schema import escalation_steps, order_teams
from tests._orders_rig import seed_directory_tx

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


def request(ref, team):
    return OrderRequest(ref, "rescue", "白塔镇山体滑坡，速派人员", Target("teams", (team,)), "same_township")


def order_team_ids(conn, order_id):
    return set(conn.execute(select(order_teams.c.id).where(order_teams.c.order_id == order_id)).scalars())


def step_ids(conn, ots):
    return set(conn.execute(select(escalation_steps.c.id).where(escalation_steps.c.order_team_id.in_(ots))).scalars())


@pytest_twisted.inlineCallbacks
def test_a_lower_step_id_committed_later_is_scheduled_at_the_next_refresh(pg_database):
    db = pg_database
    yield db.run(seed_directory_tx, 2)
    clock = task.Clock()
    clock.advance(NOW.timestamp())
    engine = EscalationEngine(db, clock, outbox=None, caller=None, cfg=EscalationConfig())
    yield engine.start()
    cfg = EscalationConfig()
    # node 1 creates its order: its steps take the lower ids, and it has not committed yet ...
    slow = db.engine.connect()
    tx = slow.begin()
    first = create_order_tx(slow, request("INC-SLOW", "PUB-01"), NOW, cfg, random.Random(1))
    # ... when node 2 creates and commits its own (higher ids)
    second = yield db.run(create_order_tx, request("INC-FAST", "PUB-02"), NOW, cfg, random.Random(2))
    first_ots = order_team_ids(slow, first.order_id)
    second_ots = yield db.run(order_team_ids, second.order_id)
    first_steps = step_ids(slow, first_ots)
    second_steps = yield db.run(step_ids, second_ots)
    assert max(first_steps) < min(second_steps)        # the situation this is about
    yield engine.refresh()
    assert all(ot in engine.timers for ot in second_ots)
    assert not any(ot in engine.timers for ot in first_ots)      # not committed: invisible
    tx.commit()
    slow.close()
    yield engine.refresh()
    assert all(ot in engine.timers for ot in first_ots)           # found at the very next refresh
    due = {ot: engine.timers.due(ot) for ot in first_ots}
    assert all(d is not None and d > NOW.timestamp() for d in due.values())
    assert engine._unseen == {}                                   # nothing left to look for
    engine.stop()


@pytest_twisted.inlineCallbacks
def test_a_rolled_back_gap_is_given_up_after_a_while(pg_database):
    db = pg_database
    yield db.run(seed_directory_tx, 2)
    clock = task.Clock()
    clock.advance(NOW.timestamp())
    engine = EscalationEngine(db, clock, outbox=None, caller=None, cfg=EscalationConfig())
    yield engine.start()
    cfg = EscalationConfig()
    lost = db.engine.connect()
    tx = lost.begin()
    create_order_tx(lost, request("INC-LOST", "PUB-01"), NOW, cfg, random.Random(1))
    yield db.run(create_order_tx, request("INC-KEPT", "PUB-02"), NOW, cfg, random.Random(2))
    tx.rollback()
    lost.close()
    yield engine.refresh()
    assert engine._unseen                                          # the gap is watched ...
    clock.advance(engine.UNSEEN_KEEP_S + 1)
    yield engine.refresh()
    assert engine._unseen == {}                                    # ... and then given up
    engine.stop()


@pytest_twisted.inlineCallbacks
def test_a_step_still_uncommitted_when_the_engine_starts_is_found_at_its_first_refresh(pg_database):
    db = pg_database
    yield db.run(seed_directory_tx, 2)
    clock = task.Clock()
    clock.advance(NOW.timestamp())
    cfg = EscalationConfig()
    slow = db.engine.connect()
    tx = slow.begin()
    first = create_order_tx(slow, request("INC-SLOW", "PUB-01"), NOW, cfg, random.Random(1))
    first_ots = order_team_ids(slow, first.order_id)
    yield db.run(create_order_tx, request("INC-FAST", "PUB-02"), NOW, cfg, random.Random(2))
    engine = EscalationEngine(db, clock, outbox=None, caller=None, cfg=cfg)
    yield engine.start()                        # loads the committed order's steps only
    assert not any(ot in engine.timers for ot in first_ots)
    tx.commit()
    slow.close()
    yield engine.refresh()
    assert all(ot in engine.timers for ot in first_ots)
    engine.stop()
