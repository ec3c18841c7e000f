"""A unit of work's round trips on PostgreSQL: the checkout's BEGIN is the pre-ping, and the
writes still held, the wake-ups and the COMMIT go together (gateway/storage/pool.py, bulk.py).
What a user would notice if these were wrong: work lost or run twice after the database dropped
a connection, maintenance that cannot run, a held write kept despite its error, a node not woken,
an event told with the wrong id."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import pytest_twisted
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway.cluster.wakeups import CHANNEL, notify_tx
from gateway.eventlog import record_events
from gateway.storage import Database
from gateway.storage.bulk import bulk_insert, insert_returning_ids, together
from gateway.storage.schema import audit_log, event_log
from tests._pg import other_session, written_on_server

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)


def _pid_tx(conn):
    conn.execute(select(audit_log.c.id).limit(1)).all()
    return conn.connection.driver_connection.info.backend_pid


@pytest_twisted.inlineCallbacks
def test_work_after_the_server_dropped_its_connection_runs_on_a_new_one(pg_database, pg_migrated_url):
    """The checkout's BEGIN finds the pooled connection dead: it is replaced, and the unit of work
    runs once, on the new one (as pool_pre_ping did, one round trip fewer)."""
    first = yield pg_database.run(_pid_tx)
    with other_session(pg_migrated_url) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", (first,)).fetchone()[0]

    def write_tx(conn):
        bulk_insert(conn, audit_log, [dict(at=T0, actor="test", action="after.drop", subject="x")])
        return _pid_tx(conn)
    second = yield pg_database.run(write_tx)
    assert second != first
    rows = yield pg_database.run(lambda conn: conn.execute(select(audit_log.c.action)).scalars().all())
    assert rows == ["after.drop"]


def test_maintenance_outside_a_transaction_still_runs(pg_migrated_url):
    """VACUUM cannot run in a transaction: a connection set to AUTOCOMMIT before its first
    statement gives up the checkout's BEGIN (bench/database.py's ANALYZE, an operator's VACUUM)."""
    db = Database(None, pg_migrated_url)
    try:
        with db.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("VACUUM audit_log")
        with db.engine.begin() as conn:       # and the next unit of work has its transaction again
            conn.exec_driver_sql("CREATE TEMP TABLE t (n int) ON COMMIT DROP")
    finally:
        db.engine.dispose()


@pytest_twisted.inlineCallbacks
def test_writes_held_to_the_commit_are_committed_and_the_other_nodes_woken(pg_database, pg_migrated_url):
    with other_session(pg_migrated_url) as listener:
        listener.execute(f"LISTEN {CHANNEL}")

        def unit(conn):
            with together(conn, until_commit=True):
                bulk_insert(conn, audit_log, [dict(at=T0, actor="test", action="held", subject="one")])
                notify_tx(conn, "reply")
            return written_on_server(conn, pg_migrated_url)      # the block is over: still nothing sent
        written_before_commit = yield pg_database.run(unit)
        assert written_before_commit is False
        rows = yield pg_database.run(lambda conn: conn.execute(select(audit_log.c.subject)).scalars().all())
        assert rows == ["one"]
        # Sent with the COMMIT: queued for the listener by the time the unit's Deferred fired.
        woken = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
        assert woken == ["reply"]


@pytest_twisted.inlineCallbacks
def test_a_held_write_failing_at_the_commit_fails_the_unit_and_keeps_nothing(database):
    """On both backends alike: the unit fails with SQLAlchemy's IntegrityError, nothing is kept."""
    first = yield database.run(lambda conn: insert_returning_ids(
        conn, audit_log, [dict(at=T0, actor="test", action="a", subject="first")])[0])

    def unit(conn):
        with together(conn, until_commit=True):
            bulk_insert(conn, audit_log, [dict(at=T0, actor="test", action="a", subject="kept?")])
            bulk_insert(conn, audit_log, [dict(id=first, at=T0, actor="test", action="a", subject="same id")])
    with pytest.raises(IntegrityError):
        yield database.run(unit)
    rows = yield database.run(lambda conn: conn.execute(select(audit_log.c.subject)).scalars().all())
    assert rows == ["first"]


@pytest_twisted.inlineCallbacks
def test_events_written_with_the_held_writes_are_told_with_their_own_ids_in_order(database):
    told = []
    database.add_event_listener(told.extend)

    def unit(conn):
        with together(conn, until_commit=True):
            bulk_insert(conn, audit_log, [dict(at=T0, actor="test", action="a", subject="x")])
            record_events(conn, [("first", {"n": 1}), ("second", {"n": 2})], T0, ids_unread=True)
            record_events(conn, [("third", {"n": 3})], T0, ids_unread=True)
    yield database.run(unit)
    logged = yield database.run(lambda conn: [tuple(r) for r in conn.execute(
        select(event_log.c.id, event_log.c.kind).order_by(event_log.c.id))])
    assert [e.kind for e in told] == ["first", "second", "third"]
    assert [(e.id, e.kind) for e in told] == logged
    assert [e.payload["n"] for e in told] == [1, 2, 3]
