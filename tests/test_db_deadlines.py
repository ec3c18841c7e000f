"""Every database operation has a deadline: a statement that runs too long, or work that waits too
long for a database thread, fails loudly (a log line naming the unit of work) instead of holding
a pool thread for ever."""
import threading

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads
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


@pytest_twisted.inlineCallbacks
def test_the_sms_outbox_retries_a_write_that_passed_its_deadline(database):
    """Durable work is retried: a message the outbox was given is committed once the database
    answers again, and only then is its sender told."""
    from twisted.internet import defer
    from twisted.internet.task import Clock

    from sms.store import SqlStore

    class Flaky:
        """The database, whose first unit of work passes its deadline."""
        reactor = Clock()

        def __init__(self):
            self.attempts = 0

        def run(self, fn, *args):
            self.attempts += 1
            if self.attempts == 1:
                return defer.fail(DatabaseDeadline("sms.store._run_batch: no answer", "statement"))
            return database.run(fn, *args)
    flaky = Flaky()
    store = SqlStore(flaky)
    told = []
    d = store.add_message(0.0, "+447700900001", "集结演练", "order", None, None).addCallback(told.append)
    assert told == [] and flaky.attempts == 1          # not acknowledged: nothing was committed
    flaky.reactor.advance(store.retry_delay)
    yield d
    assert flaky.attempts == 2 and told and told[0]["state"] == "queued"
    rows = yield database.run(lambda c: c.exec_driver_sql("SELECT count(*) FROM sms_messages").scalar())
    assert rows == 1


@pytest.mark.timeout(60)
@pytest_twisted.inlineCallbacks
def test_a_commanders_answer_is_recorded_once_the_database_answers_again(database):
    from twisted.internet import defer

    from gateway.feedback import store as feedback_store
    from tests._orders_rig import Rig, local, phone, seed_directory_tx
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, local(2026, 3, 2, 10, 0))

    class Flaky:
        """The database, whose first feedback batch passes its deadline."""
        reactor = rig.clock
        failed = 0
        deadline_passed = defer.Deferred()

        def run(self, fn, *args):
            if fn is feedback_store.record_batch_tx and not Flaky.failed:
                Flaky.failed += 1
                rig.clock.callLater(0, Flaky.deadline_passed.callback, None)
                return defer.fail(DatabaseDeadline("feedback.store.record_batch_tx: no answer", "statement"))
            return database.run(fn, *args)
    rig.feedback.db = Flaky()
    try:
        order = yield rig.send(teams_=("PUB-01",))
        d = rig.sms(phone(1, "commander"), f"{order.code} 到达")
        while not Flaky.deadline_passed.called:              # the raw row commits on the real pool
            yield task.deferLater(reactor, 0.01, lambda: None)
            rig.clock.advance(0)
        assert not d.called                                  # nobody is told before it is committed
        rig.clock.advance(rig.feedback.RETRY_S)
        outcome, _raw = yield d
        assert outcome.accepted and Flaky.failed == 1
        assert rig.outbox.to(phone(1, "commander"), "confirmation") == [f"已记录 {order.code} 到达 10:00"]
    finally:
        rig.stop()
