"""The feedback engine: IInboundSmsSink and IKeypadSink.

Parse (pure), judge and record with its event (one transaction), then, only after the commit,
answer the sender and stop the team's escalation.  A reply that does not parse, comes
from a number not on the roster, or names an order the team does not have, is kept raw with
the reason (inbound_raw.state refused/garbage), audited, and the engine carries on.
"""
from __future__ import annotations

from dataclasses import replace

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from gateway import metrics
from gateway.escalation.config import EscalationConfig
from gateway.feedback import store
from gateway.interfaces import (FeedbackOutcome, IInboundSmsSink, IKeypadSink, InboundSms, ISituationSink,
                                KeypadAnswer, SpokenReport)

from gateway.orders.grammar import DIGIT_STATUS, SITUATION, Refusal, Reply, parse_reply
from gateway.orders.times import utc
from gateway.storage.bulk import together
from gateway.storage.group import run_units
from gateway.storage.retry import run_until_committed
from gateway.storage.pool import DatabaseDeadline

log = Logger()


_RETRYING = object()


@implementer(IInboundSmsSink, IKeypadSink, ISituationSink)
class FeedbackEngine:
    # Answers arriving while a transaction is in flight are recorded together in the next one
    # (group commit): one commit for many answers during a burst, and the escalation engine's
    # claims wait behind at most a couple of batches, not behind thousands of queued transactions.
    # Under a backlog (SECOND_BATCH_AT answers waiting), a second batch goes while one is in
    # flight: one judges in Python while the other waits on the database (bench.replies on two
    # cores: 860-940 judged/s with one, 930-1,240 with two).  Not below it: small batches side by
    # side cost more per answer under one GIL (latency at 100/s doubled, keypresses slower).  Answers
    # from one phone are never in two batches at once, so they are judged in the order they
    # came; two batches answering for the same team take its row lock in turn.
    MAX_BATCH = 100
    MAX_IN_FLIGHT = 2
    SECOND_BATCH_AT = 50
    RETRY_S = 1.0                 # after a database deadline

    def __init__(self, db, outbox, escalation=None, cfg: EscalationConfig = EscalationConfig(), *,
                 clock=None, write_alarm_s: float = 30.0):
        """clock: with it, an answer's transaction is retried through database faults until it
        commits (gateway/storage/retry.py), so a reply during an outage is judged when it ends."""
        self.db, self.outbox, self.escalation, self.cfg = db, outbox, escalation, cfg
        self.clock, self.write_alarm_s = clock, write_alarm_s
        self._queue: list[tuple[store.Answer, defer.Deferred, tuple | None]] = []
        self._flights = 0                     # batches in flight
        self._phones_in_flight: set[str] = set()
        self._paused = False                  # after a database deadline, until RETRY_S has passed
        self.is_drill = lambda order_id: False      # DrillOrders.is_drill: drills counted apart

    # --- IInboundSmsSink ---------------------------------------------------------------------
    def sms_received(self, sms: InboundSms):
        answer = store.Answer("sms", sms.sender, parse_reply(sms.text), utc(sms.received_at), sms.raw_id, sms.text)
        return self._handle(answer)

    # --- IKeypadSink -------------------------------------------------------------------------
    def keypad_answer(self, answer: KeypadAnswer):
        return self._handle(self._keypad(answer))

    def keypad_answer_journalled(self, answer: KeypadAnswer, journal, entry):
        """keypad_answer for a keypress not journalled yet (answer.raw_id None): its raw row
        (`journal.unit(entry)`) is written in the transaction that judges it, so that one commit,
        not two in turn, holds the keypress, its verdict and the reply SMS before the caller is
        told.  If that transaction fails, the raw row is committed alone first, then the answer
        judged by itself, as keypad_answer would.  A journal on another database (or without
        units) is written first, then the answer judged.
        Returns (journalled, judged): Deferred[raw id] after the COMMIT holding the raw row, and
        Deferred[FeedbackOutcome]; when the raw row could not be written, both fail with that."""
        unit = getattr(journal, "unit", None)
        journalled = defer.Deferred()
        if unit is not None and getattr(journal, "db", None) is self.db:
            return journalled, self._handle(self._keypad(answer), (unit(entry), journalled))

        def raw_committed(raw_id):
            journalled.callback(raw_id)
            return self.keypad_answer(replace(answer, raw_id=raw_id))

        def raw_failed(f):
            journalled.errback(f)
            return f
        return journalled, journal.record(entry).addCallbacks(raw_committed, raw_failed)

    def _keypad(self, answer: KeypadAnswer) -> store.Answer:
        status = DIGIT_STATUS.get(answer.digit)
        parsed = Reply(status, answer.order_code) if status else Refusal("unrecognised")
        return store.Answer("keypad", answer.caller, parsed, utc(answer.received_at), answer.raw_id,
                            f"keypad {answer.digit} call {answer.call_id}"
                            + (f" identified by {answer.identified_by}" if answer.identified_by else ""))

    # --- ISituationSink ----------------------------------------------------------------------
    def situation_recorded(self, r: SpokenReport):
        return self._handle(store.Answer("keypad", r.caller, Reply(SITUATION, r.order_code), utc(r.received_at),
                                         r.raw_id, f"keypad 5 recording {r.audio_path} {r.seconds:.1f} s call "
                                         f"{r.call_id}", audio_path=r.audio_path, audio_seconds=r.seconds))

    def open_orders_for(self, caller: str):
        return self.db.run(store.open_codes_for_phone_tx, caller)

    # --- the one path for both channels --------------------------------------------------------
    def _record(self, a: store.Answer, raw=None):
        """raw: (the journal's unit of work for a.raw_id, Deferred for that id), or None."""
        d = defer.Deferred()
        self._queue.append((a, d, raw))
        self._next_batch()
        return d

    @property
    def _busy(self) -> bool:
        """Answers in flight or waiting (the benches wait for the engine to be idle)."""
        return bool(self._flights or self._queue)

    def _take_batch(self) -> list:
        """The next batch: the oldest answers, up to MAX_BATCH, from phones with none in flight
        (a phone's later answers wait behind its earlier ones, keeping their place in line)."""
        batch, rest, held = [], [], set(self._phones_in_flight)
        queue = self._queue
        for i, item in enumerate(queue):
            if len(batch) == self.MAX_BATCH:
                rest += queue[i:]
                break
            phone = item[0].phone
            if phone in held:
                rest.append(item)       # not past an earlier answer of its own phone
            else:
                batch.append(item)
        self._queue = rest
        return batch

    def _next_batch(self, _=None):
        while self._queue and not self._paused and (
                self._flights == 0
                or (self._flights < self.MAX_IN_FLIGHT and len(self._queue) >= self.SECOND_BATCH_AT)):
            batch = self._take_batch()
            if not batch:
                return
            self._flights += 1
            phones = {a.phone for a, _d, _raw in batch}
            self._phones_in_flight |= phones
            self._run_batch(batch).addBoth(self._landed, phones)

    def _landed(self, result, phones):
        self._flights -= 1
        self._phones_in_flight -= phones
        if result is not _RETRYING:
            self._next_batch()

    def _resume(self):
        self._paused = False
        self._next_batch()

    def _run_batch(self, batch) -> defer.Deferred:
        journalled = any(raw is not None for _a, _d, raw in batch)

        def recorded(result):
            raw_ids, verdicts = result if journalled else ((None,) * len(batch), result)
            for (_, d, raw), raw_id, v in zip(batch, raw_ids, verdicts):
                if raw is not None:
                    raw[1].callback(raw_id)
                d.callback(v)

        def failed(f):
            if f.check(DatabaseDeadline):
                # The database did not answer in time and rolled back: the answers are recorded
                # when it answers again, first in line (raw rows not committed yet with them).
                log.warn("feedback: {n} answer(s) not recorded ({e}); trying again in {s} s", n=len(batch),
                         e=f.getErrorMessage(), s=self.RETRY_S)
                self._queue[:0] = batch
                if not self._paused:
                    self._paused = True
                    self.db.reactor.callLater(self.RETRY_S, self._resume)
                return _RETRYING
            # The whole batch rolled back: each answer alone, so one cannot sink the others; a
            # keypress not journalled yet is committed raw first, then judged.
            log.warn("feedback batch of {n} failed ({e}); recording one by one", n=len(batch), e=f.getErrorMessage())
            for a, d, raw in batch:
                if raw is None:
                    self._run(store.record_one_tx, a, self.cfg, self._stage, self._stage_many).chainDeferred(d)
                else:
                    self._journal_then_record(a, d, *raw)
        if journalled:
            work = self._run(_journal_and_record_tx, [(a, raw and raw[0]) for a, _d, raw in batch], self.cfg,
                             self._stage, self._stage_many)
        else:
            work = self._run(store.record_batch_tx, [a for a, _d, _raw in batch], self.cfg, self._stage,
                             self._stage_many)
        return work.addCallbacks(recorded, failed)

    def _journal_then_record(self, a: store.Answer, d: defer.Deferred, unit, journalled: defer.Deferred):
        fn, args = unit

        def raw_committed(raw_id):
            journalled.callback(raw_id)
            self._run(store.record_one_tx, replace(a, raw_id=raw_id), self.cfg, self._stage,
                      self._stage_many).chainDeferred(d)

        def raw_failed(f):
            journalled.errback(f)
            d.errback(f)
        self._run(fn, *args).addCallbacks(raw_committed, raw_failed)

    @defer.inlineCallbacks
    def _handle(self, a: store.Answer, raw=None):
        v: store.Verdict = yield self._record(a, raw)
        if v.outcome == store.DUPLICATE:
            log.info("feedback from {phone}: {reason}; ignored", phone=a.phone, reason=v.reason)
            return FeedbackOutcome(False, "", status=None)
        if v.outcome == store.RECORDED:
            metrics.FEEDBACK_RECORDED.labels(status=v.status, channel=a.channel,
                                             drill=str(self.is_drill(v.order_id)).lower()).inc()
            log.info("feedback order {code} team {team} from {phone}: {status} ({channel}, raw {raw})",
                     code=v.order_code, team=v.team_code, phone=a.phone, status=v.status, channel=a.channel,
                     raw=v.raw_id)
            if self.escalation is not None:
                self.escalation.schedule(v.order_team_id, v.next_due)
        elif v.outcome == store.NOTE:
            log.info("order {code}: note from leader {phone}", code=v.order_code, phone=a.phone)
        else:
            metrics.FEEDBACK_REFUSED.labels(reason=v.outcome).inc()
            log.warn("reply from {phone} {outcome}: {reason}", phone=a.phone, outcome=v.outcome, reason=v.reason)
        yield self._tell(v, a)
        return FeedbackOutcome(v.outcome in (store.RECORDED, store.NOTE), v.message, v.order_code, v.status,
                               needs_code=v.outcome == store.NEEDS_CODE)

    def _run(self, fn, *args):
        if self.clock is None:
            return self.db.run(fn, *args)
        return run_until_committed(self.db, self.clock, "feedback", "recording answers", fn, *args,
                                   alarm_after=self.write_alarm_s)

    @property
    def _stage(self):
        return getattr(self.outbox, "stage_tx", None)

    @property
    def _stage_many(self):
        # Only an outbox that defines it (looked up on the class: a wrapper passing unknown names
        # through must not skip its own stage_tx).
        return getattr(self.outbox, "stage_many_tx", None) if hasattr(type(self.outbox), "stage_many_tx") else None

    def _tell(self, v: store.Verdict, a: store.Answer):
        """Answer the sender (never a number not on the roster): the replies were committed with
        the feedback (Verdict.staged); the outbox sends them now (or after a restart)."""
        if v.staged:
            self.outbox.adopt(v.staged)


def _journal_and_record_tx(conn, batch, cfg, stage_sms=None, stage_many=None):
    """record_batch_tx for a batch [(answer, journal unit or None)]: the raw rows of the answers
    not journalled yet are written first (run_units: one insert for all), their ids given to
    their answers, then the batch judged, all in this one transaction (the raw rows sent with the
    batch's first read, its last writes with the COMMIT: bulk.together).  Returns (raw ids, verdicts)."""
    with together(conn, until_commit=True):
        written = run_units(conn, [unit for _a, unit in batch if unit is not None])
        ids = iter(written)
        answers = [a if unit is None else replace(a, raw_id=next(ids)) for a, unit in batch]
        return [a.raw_id for a in answers], store.record_batch_tx(conn, answers, cfg, stage_sms, stage_many,
                                                                  fresh_raw=frozenset(written))
