"""The escalation engine: fires the ladder's steps when they fall due, durably.

Every step lives in `escalation_steps` from the moment the order is committed.  In memory only
one due time per order-team is kept (TimerQueue).  When a team's time comes, its due steps are
claimed and fired in ONE transaction together with their events and what they send (the reminder SMS, the call
attempts, one alert to the duty supervisor per order and stage): the outbox and the order caller
act on those rows after the commit, or after a restart.  Pending steps are loaded again at start:
those overdue fire at once, marked late.  An auditor looks periodically for steps overdue and
not fired, and fires them.
"""
from __future__ import annotations

import itertools
from datetime import datetime

from twisted.internet import defer, task
from twisted.logger import Logger

from gateway import metrics
from gateway.cluster.claims import Claimer
from gateway.escalation import store
from gateway.escalation.config import EscalationConfig
from gateway.escalation.timers import TimerQueue
from gateway.orders import messages
from gateway.orders.team_state import STATE_WORD
from gateway.orders.times import from_seconds, now

log = Logger()


class EscalationEngine:
    def __init__(self, db, clock, outbox, caller, cfg: EscalationConfig = EscalationConfig(), *,
                 claimer: Claimer = Claimer(), takeover_seconds: float = 3.0):
        self.db, self.clock, self.outbox, self.caller, self.cfg = db, clock, outbox, caller, cfg
        self.claimer = claimer              # this node: the steps it fires are written as its own
        self.takeover_seconds = takeover_seconds
        self.timers = TimerQueue(clock, self._on_due)
        self.is_drill = lambda order_id: False      # DrillOrders.is_drill: drills counted apart
        self._watermark = 0
        self._unseen: dict[int, float] = {}       # step ids below the watermark not committed yet -> first missed
        self._refreshing: defer.Deferred | None = None
        self._loops: list[task.LoopingCall] = []
        self._stopped = False
        self._inflight: set[defer.Deferred] = set()
        self._due_keys: dict[int, None] = {}      # woken, not yet claimed (an ordered set)
        self._claiming = False
        self._claiming_keys: frozenset = frozenset()
        self.fired_lateness: list[float] = []    # seconds late of the last steps (bench, tests)
        # Several nodes: the auditor is a singleton held by a lease (start_auditor / stop_auditor),
        # not started with the engine.
        self.auditor_by_lease = False
        self._audit_loop: task.LoopingCall | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    @defer.inlineCallbacks
    def start(self):
        self._stopped = False
        pending, self._watermark = yield self.db.run(store.load_pending_tx, now(self.clock), self.claimer)
        if self._stopped:        # stopped while loading (a gateway that could not start): no timers, no loops
            return
        # The first refresh looks back over the last ids: a step with a lower id whose transaction
        # was still open at this start (another node, the CLI) is found there, not by the auditor.
        self._watermark = max(0, self._watermark - self.START_LOOKBACK)
        for ot, due in pending:
            self.timers.set(ot, due.timestamp())
        metrics.ESCALATION_PENDING.set(len(self.timers))
        log.info("escalation: {n} team timers rebuilt from the database", n=len(pending))
        for every, fn in ((self.cfg.refresh_seconds, self.refresh), (self.takeover_seconds, self.take_over)):
            loop = task.LoopingCall(self._guard, fn)
            loop.clock = self.clock
            loop.start(every, now=False)
            self._loops.append(loop)
        if not self.auditor_by_lease:
            self.start_auditor()

    def start_auditor(self):
        if self._audit_loop is None or not self._audit_loop.running:
            self._audit_loop = task.LoopingCall(self._guard, self.audit)
            self._audit_loop.clock = self.clock
            self._audit_loop.start(self.cfg.auditor_seconds, now=False)

    def stop_auditor(self):
        if self._audit_loop is not None and self._audit_loop.running:
            self._audit_loop.stop()
        self._audit_loop = None

    @property
    def running(self) -> bool:
        """Started and not stopped: wake-ups and takeovers act only then."""
        return bool(self._loops)

    def stop(self):
        self._stopped = True
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        self.stop_auditor()
        self.timers.stop()

    def _guard(self, fn):
        d = defer.maybeDeferred(fn)
        d.addErrback(lambda f: log.failure("escalation: {fn} failed", f, fn=fn.__name__))
        return self._track(d)

    def _track(self, d):
        self._inflight.add(d)
        d.addBoth(lambda r: (self._inflight.discard(d), r)[1])
        return d

    @defer.inlineCallbacks
    def settle(self):
        """Wait until nothing is in flight (tests drive a Clock, the database runs for real)."""
        while self._inflight:
            yield defer.DeferredList(list(self._inflight))

    # --- what other parts tell us ------------------------------------------------------------
    def schedule(self, order_team_id: int, due: datetime | float | None) -> None:
        """The next pending step of this team is due at `due` (None: no step left)."""
        if due is None:
            self.timers.discard(order_team_id)
        else:
            self.timers.set(order_team_id, due if isinstance(due, float) else due.timestamp())
        metrics.ESCALATION_PENDING.set(len(self.timers))

    def schedule_many(self, pairs) -> None:
        for ot, due in pairs:
            self.timers.set_earlier(ot, due if isinstance(due, float) else due.timestamp())
        metrics.ESCALATION_PENDING.set(len(self.timers))

    # A gap below the watermark (a step id taken by a transaction not yet committed) is looked at
    # again for this long; past it the transaction surely ended (statement and idle-in-transaction
    # deadlines) and was rolled back, or the auditor finds its steps.
    UNSEEN_KEEP_S = 300.0
    START_LOOKBACK = 1000
    UNSEEN_MAX = 10_000

    def refresh(self):
        """Schedule the steps committed by others since the last refresh (one refresh at a time:
        the watermark and the gaps are read and written by it alone)."""
        if self._refreshing is not None:
            return self._refreshing
        d = self._refreshing = self._refresh()
        d.addBoth(self._refreshed)
        return d

    def _refreshed(self, result):
        self._refreshing = None
        return result

    @defer.inlineCallbacks
    def _refresh(self):
        first = self._unseen
        pairs, self._watermark, unseen = yield self.db.run(store.new_steps_tx, self._watermark, tuple(first))
        t = self.clock.seconds()
        kept = {i: first.get(i, t) for i in unseen if t - first.get(i, t) < self.UNSEEN_KEEP_S}
        if len(kept) > self.UNSEEN_MAX:
            kept = dict(sorted(kept.items())[-self.UNSEEN_MAX:])
        self._unseen = kept
        self.schedule_many(pairs)

    @defer.inlineCallbacks
    def take_over(self):
        """Steps a dead node left `firing` (claimed, its SMS and calls not committed) fire again here."""
        taken, teams = yield self.db.run(store.release_firing_tx, now(self.clock), self.claimer, True)
        if taken:
            metrics.WORK_TAKEN_OVER.labels(kind="escalation_step").inc(taken)
            log.warn("escalation: {n} steps left firing by dead nodes; firing them here", n=taken)
        t = self.clock.seconds()
        for ot in teams:
            self.timers.set_earlier(ot, t)
        return taken

    @defer.inlineCallbacks
    def audit(self):
        busy = frozenset(self._due_keys) | self._claiming_keys
        missed = yield self.db.run(store.audit_tx, now(self.clock), self.cfg, busy, self.claimer)
        if missed:
            log.error("escalation auditor: {n} steps of {t} teams overdue and not fired; firing now",
                      n=sum(c for _, c in missed), t=len(missed))
            t = self.clock.seconds()
            for ot, _ in missed:
                self.timers.set_earlier(ot, t)
        return missed

    # --- firing -------------------------------------------------------------------------------
    # One claim transaction at a time: due teams that wake while it runs wait for the next one,
    # which takes them all (up to MAX_CLAIM).  A slow database then means bigger, later claims,
    # never an unbounded queue of transactions (the reply burst shares the database).
    MAX_CLAIM = 200

    def _on_due(self, items, t: float) -> None:
        self.fired_lateness.extend(t - due for _, due in items)
        if len(self.fired_lateness) > 100_000:
            del self.fired_lateness[:50_000]
        for k, _ in items:
            self._due_keys[k] = None
        self._claim_next()

    def _claim_next(self, _=None):
        if self._claiming or not self._due_keys:
            return
        self._claiming = True
        keys = list(itertools.islice(self._due_keys, self.MAX_CLAIM))
        for k in keys:
            del self._due_keys[k]
        self._claiming_keys = frozenset(keys)

        def failed(f):
            # The database refused the claim: look again shortly (the auditor backs this up).
            log.failure("escalation: claiming due steps of {n} teams failed; retrying in 5 s", f, n=len(keys))
            for k in keys:
                self.timers.set_earlier(k, self.clock.seconds() + 5.0)

        def next_claim(_):
            self._claiming, self._claiming_keys = False, frozenset()
            self._claim_next()
        d = self._fire(keys, self.clock.seconds())
        d.addErrback(failed)
        d.addBoth(next_claim)
        self._track(d)

    @defer.inlineCallbacks
    def _fire(self, order_team_ids, t: float):
        at = from_seconds(t)
        claim, staged = yield self.db.run(self._claim_and_send_tx, order_team_ids, at)
        for ot, due in claim.next_due.items():
            if due is not None and due.timestamp() <= t:
                due = from_seconds(t + 1.0)   # claimed by someone else in flight: look again shortly
            self.schedule(ot, due)
        # Committed with the steps: the outbox and the caller act on the rows now (or after a restart).
        self.outbox.adopt(staged)
        if any(f.action != "sms_again" for f in claim.fired):
            self.caller.place_due()
        for f in claim.fired:
            metrics.ESCALATION_STEPS.labels(stage=f.stage, action=f.action,
                                            drill=str(self.is_drill(f.order_id)).lower()).inc()
            metrics.ESCALATION_LATENESS.observe(max(0.0, t - f.due_at.timestamp()))
            log.warn("escalation order {code} team {team}: {stage} step {step} {action}: {reason}",
                     code=f.order_code, team=f.team_code, stage=f.stage, step=f.step, action=f.action,
                     reason=f.reason)
        for a in claim.alerts:
            names = [name for _, _, name, _ in a.teams]
            if a.supervisor is None:
                log.critical("escalation order {code}: {n} silent teams and NO duty supervisor on the roster now",
                             code=a.order_code, n=len(names))
        return claim

    def _claim_and_send_tx(self, conn, order_team_ids, at):
        """ONE transaction per claim: the due steps become `fired` together with what they send
        (reminder SMS, call attempts, the duty supervisor's SMS and call), so a crash leaves
        either all of it or none of it."""
        claim = store.claim_due_tx(conn, order_team_ids, at, self.cfg, self.claimer)
        reminders = []
        for f in claim.fired:
            if f.action == "sms_again":
                text = messages.reminder_sms(f.order_code, f.stage, STATE_WORD.get(f.team_state, f.team_state),
                                             f.finished_without_report)
                phones = list(dict.fromkeys(m.phone for m in f.contacts))
                if not phones:
                    log.error("escalation order {code} team {team}: nobody to send the reminder to",
                              code=f.order_code, team=f.team_code)
                reminders += [dict(now=at, phone=p, text=text, purpose="reminder", order_id=f.order_id)
                              for p in phones]
        if hasattr(type(self.outbox), "stage_many_tx"):        # (on the class: a wrapper must define it)
            staged = list(self.outbox.stage_many_tx(conn, reminders)) if reminders else []
        else:
            staged = [self.outbox.stage_tx(conn, at, r["phone"], r["text"], purpose="reminder", order_id=r["order_id"])
                      for r in reminders]
        for f in claim.fired:
            if f.action in ("call_commander", "call_deputy") and f.call_to is not None:
                self.caller.stage_tx(conn, at, order_id=f.order_id, team_id=f.team_id, member_id=f.call_to.id,
                                     phone=f.call_to.phone, purpose="escalation", step_id=f.step_id)
        for a in claim.alerts:
            # ONE SMS and ONE call to the duty supervisor naming every silent team
            if a.supervisor is not None:
                names = [name for _, _, name, _ in a.teams]
                staged.append(self.outbox.stage_tx(conn, at, a.supervisor.phone,
                                                   messages.supervisor_sms(a.order_code, a.stage, names),
                                                   purpose="supervisor", order_id=a.order_id))
                self.caller.stage_tx(conn, at, order_id=a.order_id, team_id=a.teams[0][0], member_id=None,
                                     phone=a.supervisor.phone, purpose="supervisor")
        # (the order.escalated / order.supervisor_alert events were recorded by claim_due_tx, in this transaction)
        store.finish_steps_tx(conn, [f.step_id for f in claim.fired], at)
        return claim, staged
