"""Durable timers: a restart in the middle of a ladder, and the auditor that finds missed steps."""
from datetime import timedelta

import pytest_twisted
from sqlalchemy import select
from twisted.internet import task

from gateway.storage.schema import audit_log, escalation_steps
from tests._orders_rig import SUPERVISOR, Rig, local, phone, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)


def at(minutes, seconds=0):
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def receipt_steps_tx(conn):
    return conn.execute(select(escalation_steps.c.action, escalation_steps.c.state, escalation_steps.c.late,
                               escalation_steps.c.fired_at, escalation_steps.c.reason)
                        .where(escalation_steps.c.stage == "receipt").order_by(escalation_steps.c.step)).all()


@pytest_twisted.inlineCallbacks
def test_restart_in_the_middle_of_the_ladder(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    order = yield rig.send(teams_=("PUB-01",))
    yield rig.advance_to(at(6))               # SMS again and the call to the commander have fired
    assert len(rig.caller.to(phone(1, "commander"), "escalation")) == 1
    rig.stop()                                # the gateway goes down at 10:06 ...

    # ... and comes back at 10:10: the 10:09 call to the deputy is overdue, the 10:12 alert is not.
    clock = task.Clock()
    clock.advance(at(10).timestamp())
    rig2 = Rig(database, at(10), clock=clock)
    yield rig2.start()
    try:
        yield rig2.escalation.settle()
        clock.advance(0)                     # the overdue step fires at once
        yield rig2.escalation.settle()
        yield rig2.caller.settle()            # the call committed with the step is placed
        assert [c["phone"] for c in rig2.caller.calls] == [phone(1, "deputy")]
        assert rig2.outbox.to(phone(1, "commander"), "reminder") == []   # nothing fired twice
        assert rig2.outbox.to(SUPERVISOR) == []
        yield rig2.advance_to(at(12))
        assert len(rig2.outbox.to(SUPERVISOR, "supervisor")) == 1
        rows = yield database.run(receipt_steps_tx)
        assert [(r.action, r.state, r.late) for r in rows] == [
            ("sms_again", "fired", False), ("call_commander", "fired", False),
            ("call_deputy", "fired", True), ("supervisor", "fired", False)]
        assert "s late" in rows[2].reason
        # the late step fired at the restart, not at its due time
        from gateway.orders.times import utc
        assert utc(rows[2].fired_at) == at(10)
        # and the team answering now still stops the rest
        out, _ = yield rig2.sms(phone(1, "deputy"), f"{order.code} 2", at(13))
        assert out.accepted
        yield rig2.advance_to(at(40))
        assert rig2.outbox.to(phone(1, "commander"), "reminder") == []
    finally:
        rig2.stop()


@pytest_twisted.inlineCallbacks
def test_a_step_left_firing_by_a_crash_fires_again(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    yield rig.send(teams_=("PUB-01",))
    rig.stop()
    # crash between the claim and the hand-off: the step is committed `firing`, its SMS never left
    yield database.run(lambda c: c.execute(escalation_steps.update().where(escalation_steps.c.step == 1,
                                                                           escalation_steps.c.stage == "receipt")
                                           .values(state="firing", fired_at=at(3))))
    clock = task.Clock()
    clock.advance(at(4).timestamp())
    rig2 = Rig(database, at(4), clock=clock)
    yield rig2.start()
    try:
        clock.advance(0)
        yield rig2.escalation.settle()
        assert len(rig2.outbox.to(phone(1, "commander"), "reminder")) == 1    # at least once
    finally:
        rig2.stop()


@pytest_twisted.inlineCallbacks
def test_auditor_fires_a_step_the_engine_missed(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",))
        ot_id = order.timers[0][0]
        yield rig.advance_to(at(0, 5))            # the refresh has seen the new steps
        rig.escalation.timers.discard(ot_id)      # then a bug loses the in-memory timer
        yield rig.advance_to(at(3))
        assert rig.outbox.to(phone(1, "commander"), "reminder") == []
        yield rig.advance_to(at(4))               # the auditor runs every 60 s
        yield rig.advance_to(at(4, 1))
        assert len(rig.outbox.to(phone(1, "commander"), "reminder")) == 1
        rows = yield database.run(receipt_steps_tx)
        assert rows[0].state == "fired" and rows[0].late
        audits = yield database.run(lambda c: c.execute(select(audit_log.c.action, audit_log.c.detail)
                                                        .where(audit_log.c.action == "escalation.missed")).all())
        assert len(audits) == 1 and audits[0].detail["order_teams"] == [ot_id]
        # and the timer is back: the rest of the ladder keeps its times
        yield rig.advance_to(at(6))
        assert len(rig.caller.to(phone(1, "commander"), "escalation")) == 1
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_order_sent_by_another_process_is_picked_up(database):
    """The CLI commits an order; the running gateway's engine and fan-out pick it up."""
    from gateway.orders.order import OrderRequest, Target
    from gateway.orders.service import OrderService
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    yield rig.fanout.start()
    try:
        cli = OrderService(database, rig.clock, None, None, rig.cfg)
        order = yield cli.send(OrderRequest("INC-9", "ordinary", "test", Target("all"), "same_township"))
        assert rig.outbox.to(phone(1, "commander")) == []
        yield rig.advance_to(at(0, 2))           # one refresh period
        yield rig.fanout.send()
        assert any(order.code in t for t in rig.outbox.to(phone(1, "commander"), "order"))
        yield rig.advance_to(at(3))
        assert len(rig.outbox.to(phone(1, "commander"), "reminder")) == 1
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_order_domain_wires_and_restarts(database):
    """The composition the gateway starts: an order sent before a stop is chased after a start."""
    from gateway.orders.domain import OrderDomain
    from gateway.orders.order import OrderRequest, Target
    from tests._orders_rig import FakeCaller, FakeOutbox
    yield database.run(seed_directory_tx, 1)
    clock = task.Clock()
    clock.advance(T0.timestamp())
    outbox = FakeOutbox()
    dom = OrderDomain(clock, database, outbox, FakeCaller(clock, database))
    yield dom.start()
    yield dom.orders.send(OrderRequest("INC-2", "rescue", "t", Target("all"), "same_township"))
    yield dom.fanout.send()
    dom.stop()
    assert len(outbox.to(phone(1, "commander"), "order")) == 1
    dom2 = OrderDomain(clock, database, outbox, FakeCaller(clock, database))
    yield dom2.start()
    try:
        clock.advance(180)
        yield dom2.escalation.settle()
        assert len(outbox.to(phone(1, "commander"), "reminder")) == 1
        assert len(outbox.to(phone(1, "commander"), "order")) == 1     # not sent twice by the sweep
    finally:
        dom2.stop()
