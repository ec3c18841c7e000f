"""Wake-ups: work committed wakes the parts at once.  On PostgreSQL a NOTIFY committed by any
connection reaches the listener's callback (a rolled-back one never does), and the listener comes
back after its connection is cut; in-process (both backends) the Database tells the registry after
the COMMIT."""
from __future__ import annotations

import uuid

import pytest
import pytest_twisted
from sqlalchemy import text
from twisted.internet import defer, reactor

from gateway.cluster.wakeups import PgListener, Wakeups, notify_tx


class Boom(Exception):
    pass


def waiter(wakeups, kind):
    """A Deferred fired by the next wake-up of `kind`."""
    box = {"d": defer.Deferred(), "count": 0}

    def woken():
        box["count"] += 1
        if not box["d"].called:
            box["d"].callback(kind)
    wakeups.on(kind, woken)
    return box


def within(d, seconds=10.0):
    return d.addTimeout(seconds, reactor)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_a_notify_committed_elsewhere_wakes_the_listener(database):
    wakeups = Wakeups(reactor)
    # kinds of this test only: other test runs share the database, and so the channel
    committed, rolled_back = f"t-commit-{uuid.uuid4().hex[:8]}", f"t-rollback-{uuid.uuid4().hex[:8]}"
    listener = PgListener(reactor, database.url, wakeups, poll_s=0.2)
    connected = defer.Deferred()
    listener.on_connected.append(lambda: connected.called or connected.callback(None))
    listener.startService()
    try:
        yield within(connected)
        # registered once listening (each (re)connection wakes every kind known then, once)
        got = waiter(wakeups, committed)
        never = waiter(wakeups, rolled_back)
        assert listener.health().ok and "LISTEN yihu_work" in listener.health().detail

        def rolled_back_tx(conn):
            notify_tx(conn, rolled_back)
            raise Boom("the work failed: nothing committed, nobody woken")
        with pytest.raises(Boom):
            yield database.run(rolled_back_tx)
        # no Database wake listener is registered here: only the NOTIFY can wake `committed`
        yield database.run(lambda conn: notify_tx(conn, committed))
        assert (yield within(got["d"])) == committed
        # notifications arrive in commit order: the rolled-back one would have come first
        assert never["count"] == 0 and listener.received >= 1

        # the LISTEN session is cut (a failover, a restart of PostgreSQL): it comes back by itself
        again = defer.Deferred()
        listener.on_connected.append(lambda: again.called or again.callback(None))
        old_pid = listener.backend_pid
        yield database.run(lambda conn: conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": old_pid}))
        yield within(again, 15)
        assert listener.backend_pid != old_pid and listener.connected
        after = waiter(wakeups, f"{committed}-after")
        yield database.run(lambda conn: notify_tx(conn, f"{committed}-after"))
        yield within(after["d"])
    finally:
        listener.stopService()


@pytest_twisted.inlineCallbacks
def test_in_process_wake_ups_follow_the_commit(database):
    wakeups = Wakeups(reactor)
    database.add_wake_listener(lambda kinds: [wakeups.wake(k) for k in kinds])
    step = waiter(wakeups, "step")
    calls = waiter(wakeups, "call")

    def staged_then_failed(conn):
        notify_tx(conn, "call")
        raise Boom("rolled back")
    with pytest.raises(Boom):
        yield database.run(staged_then_failed)

    def two_steps(conn):
        notify_tx(conn, "step")
        notify_tx(conn, "step")
    yield database.run(two_steps)
    yield within(step["d"], 5)
    yield defer.succeed(None)
    assert step["count"] == 1            # one wake-up per kind and commit, not one per row
    assert calls["count"] == 0           # rolled back: nobody woken


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_an_order_committed_by_another_process_is_handed_on_at_once_not_at_the_next_sweep(migrated_url):
    """The fan-out sweeps every 60 s here: only the NOTIFY of the order's commit can make it quick."""
    import random
    from datetime import datetime, timezone

    from sqlalchemy import func, select

    from gateway.config import load_config
    from gateway.escalation.config import EscalationConfig
    from gateway.orders.order import OrderRequest, Target
    from gateway.orders.store import create_order_tx
    from gateway.storage.pool import make_engine
    from gateway.storage.schema import deliveries
    from gateway.wiring import build_service
    from tests._orders_rig import seed_directory_tx
    cfg = load_config(None, {"gateway": {"database_url": migrated_url}, "http": {"port": 0},
                             "ami": {"enabled": False}, "ivr": {"enabled": False},
                             "escalation": {"refresh_seconds": 60.0}})
    other = make_engine(migrated_url)          # the CLI, or another node
    with other.begin() as conn:
        seed_directory_tx(conn, 2)
    gw = build_service(cfg, reactor)
    gw.startService()
    try:
        yield gw.started
        connected = defer.Deferred()
        if gw.wakeup_listener.connected:
            connected.callback(None)
        else:
            gw.wakeup_listener.on_connected.append(lambda: connected.called or connected.callback(None))
        yield within(connected)
        yield gw.fanout.send()                 # the start's own sweep is over: the next one is 60 s away
        with other.begin() as conn:
            req = OrderRequest("INC-NOTIFY", "rescue", "白塔镇山体滑坡，速派人员", Target("teams", ("PUB-01",)),
                               "same_township", created_by="cli:test")
            create_order_tx(conn, req, datetime.now(timezone.utc), EscalationConfig(), random.Random(7))
        other.dispose()

        def handed(conn):
            return conn.execute(select(func.count()).select_from(deliveries)
                                .where(deliveries.c.handed_at.is_not(None))).scalar()
        box = {"n": 0}

        def check():
            gw.database.run(handed).addCallback(lambda n: box.__setitem__("n", n))
            return box["n"] > 0
        from gateway.ami.testing import wait_for
        yield wait_for(reactor, check, timeout=10.0, interval=0.1,
                       what="the deliveries handed to the outbox")
        assert gw.wakeups.woken["order"] >= 1
    finally:
        yield gw.stopService()
        gw.database.stop()
