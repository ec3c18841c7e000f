"""How the feedback engine hands answers to the database (gateway/feedback/engine.py): one batch in
flight normally, a second one only under a backlog, never two at once with answers from the same
phone, and a database deadline pauses both.  The database here is a stand-in whose transactions
end when the test says, on a Clock: what is observed is which answers go in which batch, when."""
from __future__ import annotations

from datetime import datetime, timezone

from twisted.internet import defer, task

from gateway.feedback import store
from gateway.feedback.engine import FeedbackEngine
from gateway.orders.grammar import parse_reply
from gateway.storage.pool import DatabaseDeadline


class HeldDatabase:
    """db.run(fn, answers, ...): each transaction waits until finish(i) or fail(i, exc)."""

    def __init__(self):
        self.reactor = task.Clock()
        self.batches: list[list[str]] = []          # each batch's answers, as "phone:text"
        self._open: list[defer.Deferred] = []

    def run(self, fn, answers, *args):
        self.batches.append([f"{a.phone}:{a.text}" for a in answers])
        d = defer.Deferred()
        d.answers = answers
        self._open.append(d)
        return d

    def finish(self, i):
        d = self._open[i]
        d.callback([store.Verdict(store.REFUSED, reason="stand-in") for _ in d.answers])

    def fail(self, i, exc):
        self._open[i].errback(exc)


class Outbox:
    def adopt(self, records):
        pass


def sms(phone, text):
    return store.Answer("sms", phone, parse_reply(text), datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc), None, text)


def engine():
    db = HeldDatabase()
    fe = FeedbackEngine(db, Outbox())
    return db, fe


def send(fe, answers):
    return [fe._handle(a) for a in answers]


def test_below_a_backlog_answers_wait_for_the_batch_in_flight_and_go_together():
    db, fe = engine()
    send(fe, [sms("+8613800000001", "0427 1")])
    send(fe, [sms(f"+86138000001{i:02d}", "0427 1") for i in range(FeedbackEngine.SECOND_BATCH_AT - 1)])
    assert len(db.batches) == 1                     # 49 waiting: no second batch beside the first
    db.finish(0)
    assert len(db.batches) == 2 and len(db.batches[1]) == FeedbackEngine.SECOND_BATCH_AT - 1


def test_a_backlog_starts_a_second_batch_but_never_a_third():
    db, fe = engine()
    n, full = FeedbackEngine.SECOND_BATCH_AT, FeedbackEngine.MAX_BATCH
    send(fe, [sms("+8613800000001", "0427 1")])
    waiting = send(fe, [sms(f"+8613800{i:05d}", "0427 1") for i in range(2, 2 + n + 2 * full)])
    # The second batch goes the moment the backlog reaches SECOND_BATCH_AT; no third beside them.
    assert [len(b) for b in db.batches] == [1, n]
    db.finish(1)
    assert [len(b) for b in db.batches] == [1, n, full]
    assert all(d.called for d in waiting[:n]) and not any(d.called for d in waiting[n:])


def test_a_phone_with_an_answer_in_flight_waits_and_keeps_its_order():
    db, fe = engine()
    busy = "+8613800000001"
    send(fe, [sms(busy, "0427 1")])
    others = [sms(f"+8613800{i:05d}", "0427 1") for i in range(2, 2 + FeedbackEngine.SECOND_BATCH_AT)]
    send(fe, [sms(busy, "0427 2"), *others, sms(busy, "0427 3")])
    # The backlog's second batch takes the other phones' answers, not the busy phone's.
    assert len(db.batches) == 2
    assert len(db.batches[1]) == FeedbackEngine.SECOND_BATCH_AT - 1
    assert not any(x.startswith(busy) for x in db.batches[1])
    db.finish(0)
    assert len(db.batches) == 2                     # 3 waiting, one batch in flight: they wait for it
    db.finish(1)
    assert [x for x in db.batches[2] if x.startswith(busy)] == [f"{busy}:0427 2", f"{busy}:0427 3"]


def test_a_deadline_pauses_both_batches_and_their_answers_go_again_first():
    db, fe = engine()
    send(fe, [sms("+8613800000001", "0427 1")])
    send(fe, [sms(f"+8613800{i:05d}", "0427 1") for i in range(2, 2 + FeedbackEngine.SECOND_BATCH_AT)])
    assert len(db.batches) == 2
    send(fe, [sms("+8613900000001", "0427 1")])     # waits behind the two
    db.fail(0, DatabaseDeadline("stand-in: no answer", "statement"))
    db.fail(1, DatabaseDeadline("stand-in: no answer", "statement"))
    assert len(db.batches) == 2                     # nothing tried while the database is out
    db.reactor.advance(FeedbackEngine.RETRY_S)
    again = db.batches[2:]
    assert [x for b in again for x in b][:1 + FeedbackEngine.SECOND_BATCH_AT] == \
        [x for b in (db.batches[1], db.batches[0]) for x in b]      # the failed answers first in line
    assert fe._busy
