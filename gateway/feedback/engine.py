"""The feedback engine: IInboundSmsSink and IKeypadSink.

Parse (pure), judge and record with its event (one transaction), then, only after the commit,
answer the sender and stop the team's escalation.  A reply that does not parse, comes
from a number not on the roster, or names an order the team does not have, is kept raw with
the reason (inbound_raw.state refused/garbage), audited, and the engine carries on.
"""
from __future__ import annotations

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
from gateway.storage.retry import run_until_committed
from gateway.storage.pool import DatabaseDeadline

log = Logger()


_RETRYING = object()


@implementer(IInboundSmsSink, IKeypadSink, ISituationSink)
class FeedbackEngine:
    # Answers arriving while a transaction is in flight are recorded together in the next one
    # (group commit): one commit for many answers during a burst, and the escalation engine's
    # claims wait behind at most one batch, not behind thousands of queued transactions.
    MAX_BATCH = 100
    RETRY_S = 1.0                 # after a database deadline

    def __init__(self, db, outbox, escalation=None, cfg: EscalationConfig = EscalationConfig(), *,
                 clock=None, write_alarm_s: float = 30.0):
        """clock: with it, an answer's transaction is retried through database faults until it
        commits (gateway/storage/retry.py), so a reply during an outage is judged when it ends."""
        self.db, self.outbox, self.escalation, self.cfg = db, outbox, escalation, cfg
        self.clock, self.write_alarm_s = clock, write_alarm_s
        self._queue: list[tuple[store.Answer, defer.Deferred]] = []
        self._busy = False
        self.is_drill = lambda order_id: False      # DrillOrders.is_drill: drills counted apart

    # --- IInboundSmsSink ---------------------------------------------------------------------
    def sms_received(self, sms: InboundSms):
        answer = store.Answer("sms", sms.sender, parse_reply(sms.text), utc(sms.received_at), sms.raw_id, sms.text)
        return self._handle(answer)

    # --- IKeypadSink -------------------------------------------------------------------------
    def keypad_answer(self, answer: KeypadAnswer):
        status = DIGIT_STATUS.get(answer.digit)
        parsed = Reply(status, answer.order_code) if status else Refusal("unrecognised")
        return self._handle(store.Answer("keypad", answer.caller, parsed, utc(answer.received_at), answer.raw_id,
                                         f"keypad {answer.digit} call {answer.call_id}"
                                         + (f" identified by {answer.identified_by}" if answer.identified_by else "")))

    # --- ISituationSink ----------------------------------------------------------------------
    def situation_recorded(self, r: SpokenReport):
        return self._handle(store.Answer("keypad", r.caller, Reply(SITUATION, r.order_code), utc(r.received_at),
                                         r.raw_id, f"keypad 5 recording {r.audio_path} {r.seconds:.1f} s call "
                                         f"{r.call_id}", audio_path=r.audio_path, audio_seconds=r.seconds))

    def open_orders_for(self, caller: str):
        return self.db.run(store.open_codes_for_phone_tx, caller)

    # --- the one path for both channels --------------------------------------------------------
    def _record(self, a: store.Answer):
        d = defer.Deferred()
        self._queue.append((a, d))
        if not self._busy:
            self._next_batch()
        return d

    def _next_batch(self, _=None):
        if not self._queue:
            self._busy = False
            return
        self._busy = True
        batch, self._queue = self._queue[:self.MAX_BATCH], self._queue[self.MAX_BATCH:]

        def recorded(verdicts):
            for (_, d), v in zip(batch, verdicts):
                d.callback(v)

        def failed(f):
            if f.check(DatabaseDeadline):
                # The database did not answer in time and rolled back: the answers (their raw rows
                # are committed) are recorded when it answers again, first in line.
                log.warn("feedback: {n} answer(s) not recorded ({e}); trying again in {s} s", n=len(batch),
                         e=f.getErrorMessage(), s=self.RETRY_S)
                self._queue[:0] = batch
                self.db.reactor.callLater(self.RETRY_S, self._next_batch)
                return _RETRYING
            # The whole batch rolled back: each answer alone, so one cannot sink the others.
            log.warn("feedback batch of {n} failed ({e}); recording one by one", n=len(batch), e=f.getErrorMessage())
            for a, d in batch:
                self._run(store.record_one_tx, a, self.cfg, self._stage, self._stage_many).chainDeferred(d)
        self._run(store.record_batch_tx, [a for a, _ in batch], self.cfg, self._stage, self._stage_many).addCallbacks(
            recorded, failed).addBoth(lambda r: None if r is _RETRYING else self._next_batch())

    @defer.inlineCallbacks
    def _handle(self, a: store.Answer):
        v: store.Verdict = yield self._record(a)
        if v.outcome == store.DUPLICATE:
            log.info("feedback from {phone}: {reason}; ignored", phone=a.phone, reason=v.reason)
            return FeedbackOutcome(False, "", status=None)
        if v.outcome == store.RECORDED:
            metrics.FEEDBACK_RECORDED.labels(status=v.status, channel=a.channel,
                                             drill=str(self.is_drill(v.order_id)).lower()).inc()
            log.info("feedback order {code} team {team} from {phone}: {status} ({channel}, raw {raw})",
                     code=v.order_code, team=v.team_code, phone=a.phone, status=v.status, channel=a.channel,
                     raw=a.raw_id)
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
