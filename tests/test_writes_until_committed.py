"""No fire-and-forget writes: a state write is retried through database faults until it commits,
with the alarm past its deadline; a message's state left behind its segments' by a crash is
settled at start; a clean stop waits for the segment in a modem's hands."""
import pytest
import pytest_twisted
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from twisted.internet import defer
from twisted.internet.task import Clock

from gateway import metrics
from gateway.storage.retry import run_until_committed
from gateway.storage.schema import sms_messages, sms_segments
from sms.bank import SmsBank
from sms.config import SmsConfig
from sms.store import SqlStore
from tests.test_sms_bank import make


class FlakyDb:
    """The Database API whose first `failures` units of work fail like a server that went away."""

    def __init__(self, failures, error=None):
        self.failures, self.calls = failures, 0
        self.error = error or OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    def run(self, fn, *args):
        self.calls += 1
        if self.calls <= self.failures:
            return defer.fail(self.error)
        return defer.succeed(fn(None, *args))


def overdue(part):
    return metrics.DB_WRITES_OVERDUE.labels(part)._value.get()


def test_a_write_is_retried_through_an_outage_and_the_alarm_rings_past_its_deadline():
    clock, db = Clock(), FlakyDb(failures=12)
    retries = metrics.DB_WRITE_RETRIES.labels("test")._value.get()
    out = []
    run_until_committed(db, clock, "test", "a segment's state", lambda conn: "committed",
                        alarm_after=10.0).addBoth(out.append)
    clock.advance(9)
    assert out == [] and overdue("test") == 0              # still inside its deadline
    clock.pump([1.0] * 8)
    assert out == [] and overdue("test") == 1              # the alarm: still not committed
    clock.pump([5.0] * 10)
    assert out == ["committed"] and db.calls == 13
    assert overdue("test") == 0                            # committed: the alarm clears
    assert metrics.DB_WRITE_RETRIES.labels("test")._value.get() == retries + 12


def test_an_error_that_is_not_the_databases_fault_fails_at_once():
    clock = Clock()
    db = FlakyDb(failures=1, error=IntegrityError("INSERT", {}, Exception("duplicate key")))
    out = []
    run_until_committed(db, clock, "test", "x", lambda conn: 1).addBoth(out.append)
    assert len(out) == 1 and out[0].check(IntegrityError) and db.calls == 1


@pytest_twisted.inlineCallbacks
def test_a_message_left_sending_by_a_crash_is_settled_from_its_segments_at_start(database):
    from datetime import datetime, timezone
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)

    def crashed(conn):       # both parts went out; the process (node yihu-1) died before the message's own write
        mid = conn.execute(insert(sms_messages).values(phone="+8613800000001", text="t", purpose="order",
                                                       state="sending", parts=2, created_at=now, updated_at=now,
                                                       owner_node="yihu-1")).inserted_primary_key[0]
        for seq in (1, 2):
            conn.execute(insert(sms_segments).values(message_id=mid, seq=seq, pdu="00", tpdu_length=1, state="sent",
                                                     modem="m0", mr=seq, attempts=1, outcome_unknown=0,
                                                     updated_at=now))
        return mid
    mid = yield database.run(crashed)
    from twisted.internet import reactor
    bank = SmsBank(reactor, SqlStore(database, reactor), SmsConfig(), {}, node="yihu-1")
    yield bank.start()
    yield bank.store.idle()
    state = yield database.run(lambda c: c.execute(select(sms_messages.c.state)
                                                    .where(sms_messages.c.id == mid)).scalar())
    assert state == "sent" and bank.message_state(mid) == "sent"
    yield bank.stop()


def test_stop_waits_for_the_segment_in_the_modems_hands():
    clock, store, rig = make(n=1, segment_time=3.0, drain_seconds=20.0)
    d = rig.bank.enqueue("+8613800000001", "短", purpose="order")
    clock.advance(0.5)                                    # the segment is in the modem's hands
    assert d.called
    [seg] = [s for s in store.segments.values()]
    assert seg["state"] == "submitting"
    stopped = []
    rig.bank.stop().addBoth(stopped.append)
    clock.advance(1.0)
    assert stopped == []                                   # still waiting for the modem's answer
    for _ in range(40):
        clock.advance(0.1)
    assert stopped == [None]
    assert seg["state"] == "sent"                         # answered, committed: nothing left in doubt
