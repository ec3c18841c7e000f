"""Every database operation has a deadline: a statement that runs too long, or work that waits too
long for a database thread, fails loudly (a log line naming the unit of work) instead of holding
a pool thread for ever."""
import threading

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.logger import globalLogPublisher

from gateway import metrics
from gateway.storage import Database
from gateway.storage.pool import DatabaseDeadline

# Counts to a billion: minutes on either backend, unless its deadline interrupts it.
ENDLESS = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
           "SELECT count(*) FROM c")


def endless_report_tx(conn):
    return conn.exec_driver_sql(ENDLESS).scalar()


@pytest.fixture
def logged():
    seen = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


@pytest_twisted.inlineCallbacks
def test_a_statement_past_its_deadline_fails_and_is_logged_by_name(migrated_url, logged):
    db = Database(reactor, migrated_url, statement_timeout_s=0.2)
    db.start()
    before = metrics.DB_DEADLINES.labels(kind="statement")._value.get()
    try:
        with pytest.raises(DatabaseDeadline) as e:
            yield db.run(endless_report_tx)
        assert "test_db_deadlines.endless_report_tx" in str(e.value) and "rolled back" in str(e.value)
        lines = [ev for ev in logged if ev.get("operation") == "tests.test_db_deadlines.endless_report_tx"]
        assert lines and lines[0]["log_level"].name == "error"
        assert metrics.DB_DEADLINES.labels(kind="statement")._value.get() == before + 1
        # the thread is free again: the next unit of work runs
        assert (yield db.run(lambda c: c.exec_driver_sql("SELECT 1").scalar())) == 1
    finally:
        db.stop()


@pytest_twisted.inlineCallbacks
def test_work_that_waits_too_long_for_a_database_thread_is_not_run(migrated_url, logged):
    now = [100.0]
    db = Database(reactor, migrated_url, threads=1, pool_timeout_s=5.0, timer=lambda: now[0])
    db.start()
    release, holding = threading.Event(), threading.Event()
    ran = []
    try:
        busy = db.run(lambda c: (holding.set(), release.wait(10)))      # holds the only thread
        yield threads.deferToThread(holding.wait, 10)
        late = db.run(lambda c: ran.append(1))              # queued behind it
        now[0] += 6.0                                       # ... for longer than the deadline
        release.set()
        yield busy
        with pytest.raises(DatabaseDeadline) as e:
            yield late
        assert "waited 6.0 s for a database thread" in str(e.value) and ran == []
        assert any("database deadline passed" in (ev.get("log_format") or "") for ev in logged)
    finally:
        release.set()
        db.stop()
