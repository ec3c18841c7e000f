"""The order caller (IOrderCaller): durable voice calls that read an order, with retries.

Every attempt is a `call_attempts` row (ivr/call_store.py).  A call is asked for by committing
its first attempt `due` (the order's fan-out does it in the transaction that marks the delivery
`calling`; `call_order` does it for the escalation ladder).  Due attempts are placed only while
the AMI link is up: they wait for the link, they are not spent on it.  Each is committed
`placing` with the channel id the gateway chose before the Async Originate goes out (it becomes
the channel's Uniqueid, hence agi_uniqueid in the order flow).  The Originate carries the order
code, the dialled phone, the delivery id and a one-time token (ivr/tokens.py) as channel
variables; Asterisk runs `gateway-out,order`, whose AGI is the order flow.  The attempt is
`ringing` once Asterisk shows the
channel, then its outcome, committed together with the next attempt when the policy retries.
The chain stops when the team has answered or the order is closed.

After a restart (or a lost AMI connection) attempts left `placing`/`ringing` are reconciled
against Asterisk's channels: a channel still there is followed to its end; a channel gone means
the outcome is unknown, recorded as such, and the attempt retried per policy.

The token is minted when an attempt is placed (each attempt its own; a retry or a call that
waited for the link gets a fresh expiry) and is NOT stored: it is an HMAC under the key kept in
the data directory, so a call placed before a restart still verifies after it, its single use is
recorded by the token gate (call_tokens_used), and reconciliation follows a channel by its id,
never by its token.  A live token in call_attempts would let a database reader answer a ringing
call for a team, which the key's keeping out of the database exists to prevent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import phonenumbers
from sqlalchemy import insert
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from gateway import metrics
from gateway.ami.protocol import AmiNotConnected
from gateway.cluster.claims import Claimer
from gateway.interfaces import IOrderCaller, OriginateResult
from gateway.storage.retry import run_until_committed
from gateway.storage.schema import deliveries
from ivr import call_store as cs

log = Logger()

# OriginateResponse Reason (Asterisk's control frame of the outcome)
REASONS = {4: "answered", 5: "busy", 3: "no_answer", 0: "failed", 1: "failed", 8: "failed"}
# Hangup Cause of a followed channel that never came up (Q.850)
HANGUP_CAUSES = {17: "busy", 18: "no_answer", 19: "no_answer", 21: "failed", 16: "no_answer"}


def outcome_of(result: OriginateResult) -> str:
    """answered / busy / no_answer / failed; a Success response is answered whatever the reason."""
    if result.success and result.reason in (0, 4):
        return "answered"
    return REASONS.get(result.reason, "failed")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3                    # calls in all, the first included
    delay: float = 60.0                  # seconds between attempts
    retry_on: frozenset = field(default_factory=lambda: frozenset({"busy", "no_answer", "failed", "unknown"}))
    ring_timeout_ms: int = 30000         # Originate Timeout: how long the phone rings


@implementer(IOrderCaller)
class OrderCaller:
    POLL_SECONDS = 1.0         # attempts committed by other processes, and retries falling due
    RECONCILE_SECONDS = 30.0   # attempts in flight that nobody here awaits, looked at again
    MAX_CLAIM = 100            # attempts placed per claim

    def __init__(self, reactor, originator, db, *, policy: RetryPolicy = RetryPolicy(),
                 channel_template: str = "PJSIP/{national}@trunk", context: str = "gateway-out",
                 exten: str = "order", caller_id: str | None = '"Command Center" <057687770110>',
                 write_alarm_s: float = 30.0, tokens=None, claimer: Claimer | None = None,
                 takeover_seconds: float | None = None):
        self.reactor = reactor
        self.claimer = claimer or Claimer()     # this node: the attempts it places are written as its own
        # attempts in flight on a dead node are looked for this often (reconciled, then the retry policy)
        self.takeover_seconds = takeover_seconds
        self.write_alarm_s = write_alarm_s
        self.originator = originator      # IOriginator (the AmiLink in the gateway)
        self.db = db
        self.policy = policy
        self.channel_template = channel_template
        self.context = context
        self.exten = exten
        self.caller_id = caller_id
        self._waiters: dict[int, defer.Deferred] = {}     # attempt id -> the chain's outcome
        self._tracked: dict[str, int] = {}                # channel id -> attempt id (ours, in flight)
        self._rung: set[int] = set()
        self._following: dict[str, cs.Attempt] = {}       # channel ids found alive at reconciliation
        self._claiming = self._again = False
        self._loops: list[task.LoopingCall] = []
        self._waiting_logged = False
        self._inflight: set[defer.Deferred] = set()
        if hasattr(originator, "add_event_listener"):
            originator.add_event_listener(self._ami_event)
            originator.add_connect_listener(self._link_changed)
        self.tokens = tokens              # CallTokens: every Originate carries a fresh one

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self):
        loops = [(self.place_due, self.POLL_SECONDS, True),
                 (lambda: self._guard(self.reconcile()), self.RECONCILE_SECONDS, False)]
        if self.takeover_seconds:
            # only dead nodes' attempts: this node's own are never in doubt while it places them
            loops.append((self.take_over, self.takeover_seconds, False))
        for fn, every, now in loops:
            loop = task.LoopingCall(fn)
            loop.clock = self.reactor
            loop.start(every, now=now)
            self._loops.append(loop)

    def stop(self):
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []

    @property
    def running(self) -> bool:
        """Started and not stopped: wake-ups and takeovers act only then."""
        return bool(self._loops)

    def take_over(self):
        """Reconcile the attempts dead nodes left placing or ringing."""
        return self._guard(self.reconcile(dead_only=True))

    def _link_up(self) -> bool:
        return getattr(self.originator, "connected", True)

    def _link_changed(self, up: bool):
        if up:
            self._guard(self.reconcile())
            self.place_due()

    # --- asking for calls -----------------------------------------------------------------------
    def call_order(self, order_code: str, phone: str, *, order_id: int, team_id: int,
                   member_id: int | None = None, purpose: str = "order",
                   delivery_id: int | None = None, step_id: int | None = None) -> defer.Deferred:
        """Commit the call's first attempt, then place it; Deferred[str] with the chain's outcome
        (answered / busy / no_answer / failed / unknown / cancelled) while this process lives."""
        d = defer.Deferred()

        def staged(attempt_id):
            self._waiters[attempt_id] = d
            self.place_due()
        call = dict(order_id=order_id, team_id=team_id, member_id=member_id, phone=phone, purpose=purpose,
                    delivery_id=delivery_id, step_id=step_id)
        self.db.run(lambda conn, now: stage_call_tx(conn, now, **call), self._now()).addCallbacks(staged, d.errback)
        return d

    @staticmethod
    def stage_tx(conn, now, **call) -> int:
        """Inside another part's transaction (the fan-out, an escalation step): the call's first
        attempt, committed with the state change that asks for it; then place_due()."""
        return stage_call_tx(conn, now, **call)

    # --- placing --------------------------------------------------------------------------------
    def place_due(self):
        if self._claiming:
            self._again = True
            return
        if not self._link_up():
            if not self._waiting_logged:
                self._waiting_logged = True
                log.warn("order calls: the AMI link is down; due attempts wait for it")
            return
        self._waiting_logged = False
        self._claiming = True

        def done(claimed):
            attempts, cancelled = claimed
            for aid in cancelled:
                waiter = self._waiters.pop(aid, None)
                if waiter is not None:
                    waiter.callback("cancelled")
            for a in attempts:
                self._place(a)
            return len(attempts)

        def again(r):
            self._claiming = False
            if self._again or r == self.MAX_CLAIM:
                self._again = False
                self.place_due()
        d = self.db.run(cs.claim_due_tx, self._now(), self.MAX_CLAIM, frozenset(self._tracked.values()),
                        self.claimer)
        d.addCallback(done)
        d.addErrback(lambda f: log.failure("order calls: claiming due attempts failed; retrying", f))
        d.addBoth(again)
        self._guard(d)

    def _variables(self, a: cs.Attempt) -> dict[str, str]:
        """The Originate's channel variables (the order flow reads them), with this attempt's
        one-time token: minted now, as the attempt goes out, valid while it rings plus grace."""
        v = {"ORDER_CODE": a.order_code, "YIHU_PHONE": a.phone}
        if a.delivery_id is not None:
            v["YIHU_DELIVERY"] = str(a.delivery_id)
        if self.tokens is not None:
            v.update(self.tokens.variables(None if a.delivery_id is None else str(a.delivery_id), a.phone,
                                           self.reactor.seconds(), self.policy.ring_timeout_ms / 1000.0))
        return v

    def _place(self, a: cs.Attempt):
        self._tracked[a.channel_id] = a.id
        d = defer.maybeDeferred(
            self.originator.originate,
            self.channel_template.format(phone=a.phone.lstrip("+"), national=national(a.phone)),
            context=self.context, exten=self.exten, priority=1, variables=self._variables(a),
            channel_id=a.channel_id, caller_id=self.caller_id, timeout_ms=self.policy.ring_timeout_ms)

        def answered(result):
            outcome = outcome_of(result)
            return self._finish(a, outcome, f"{outcome} (reason {result.reason}, channel id {a.channel_id})")

        def refused(f):
            from gateway.ami.link import OriginateInterrupted, OriginateTimeout
            if f.check(AmiNotConnected):
                # Never written to Asterisk: the attempt waits for the link, not spent on it.
                self._tracked.pop(a.channel_id, None)
                return self._write(cs.unplaced_tx, a.id, self._now(), "not placed: AMI link down")
            if f.check(OriginateInterrupted, OriginateTimeout):
                # It may or may not ring: Asterisk's channels decide (reconcile at the next link-up).
                log.warn("order call {code} to {phone} ({cid}): {why}; reconciling with Asterisk",
                         code=a.order_code, phone=a.phone, cid=a.channel_id, why=f.getErrorMessage())
                self._tracked.pop(a.channel_id, None)
                if self._link_up():
                    return self.reconcile()
                return None
            why = f"{f.type.__name__}: {f.getErrorMessage()}"
            log.warn("order call {code} to {phone}: originate failed: {why}", code=a.order_code, phone=a.phone,
                     why=why)
            return self._finish(a, "failed", f"failed (originate: {why[:120]})")
        d.addCallbacks(answered, refused)
        self._guard(d)

    def _finish(self, a: cs.Attempt, outcome: str, detail: str):
        p = self.policy
        d = self._write(cs.finish_tx, a.id, outcome, detail, self._now(), p.attempts, p.retry_on, p.delay)

        def recorded(next_id):
            self._tracked.pop(a.channel_id, None)
            self._following.pop(a.channel_id, None)
            self._rung.discard(a.id)
            metrics.ORDER_CALLS.labels(outcome).inc()
            log.info("order call {code} to {phone} attempt {n} ({cid}): {detail}", code=a.order_code, phone=a.phone,
                     n=a.attempt, cid=a.channel_id, detail=detail)
            waiter = self._waiters.pop(a.id, None)
            if next_id is not None:
                if waiter is not None:
                    self._waiters[next_id] = waiter
                self.reactor.callLater(p.delay, self.place_due)
            elif waiter is not None:
                # the chain's final word: a retry the team no longer needs ends "cancelled"
                waiter.callback(outcome)
        return d.addCallback(recorded)

    # --- reconciliation -------------------------------------------------------------------------
    @defer.inlineCallbacks
    def reconcile(self, dead_only: bool = False):
        """Attempts in flight that nobody here awaits: follow their channel, or record unknown
        (`dead_only`: those of dead nodes only, taken over)."""
        if not self._link_up():
            return
        rows, taken = yield self.db.run(cs.in_flight_tx, self._now(), self.claimer, dead_only)
        if taken:
            metrics.WORK_TAKEN_OVER.labels(kind="call_attempt").inc(taken)
            log.warn("order calls: {n} attempt(s) in flight on dead nodes taken over; reconciling them", n=taken)
        rows = [r for r in rows if r.channel_id not in self._tracked and r.channel_id not in self._following]
        if not rows:
            return
        try:
            listing = yield self.originator.send_action("CoreShowChannels")
        except Exception as e:  # noqa: BLE001 - the next link-up tries again
            log.warn("order calls: cannot list Asterisk's channels ({e}); reconciling later", e=e)
            return
        alive = {m.get("Uniqueid"): m for m in listing.events}
        for a in rows:
            ch = alive.get(a.channel_id)
            if ch is not None:
                log.info("order call {code} to {phone}: channel {cid} still up; following it", code=a.order_code,
                         phone=a.phone, cid=a.channel_id)
                if ch.get("ChannelState") == "6":
                    yield self._finish(a, "answered", f"answered (found up at reconciliation, channel id {a.channel_id})")
                else:
                    self._following[a.channel_id] = a
                    yield self._write(cs.ringing_tx, a.id, self._now())
            else:
                log.warn("order call {code} to {phone}: channel {cid} gone; outcome unknown", code=a.order_code,
                         phone=a.phone, cid=a.channel_id)
                yield self._finish(a, "unknown", f"unknown (channel id {a.channel_id} gone at reconciliation)")

    def _ami_event(self, msg):
        uid = msg.get("Uniqueid")
        if not uid:
            return
        aid = self._tracked.get(uid)
        if aid is not None and aid not in self._rung and msg.name in ("Newchannel", "DialBegin", "Newstate"):
            self._rung.add(aid)
            self._guard(self._write(cs.ringing_tx, aid, self._now()))
        a = self._following.get(uid)
        if a is None:
            return
        if msg.name == "Newstate" and msg.get("ChannelState") == "6":
            self._guard(self._finish(a, "answered", f"answered (followed, channel id {uid})"))
        elif msg.name == "Hangup":
            try:
                cause = int(msg.get("Cause") or 0)
            except ValueError:
                cause = 0
            outcome = HANGUP_CAUSES.get(cause, "failed")
            self._guard(self._finish(a, outcome, f"{outcome} (followed, hangup cause {cause}, channel id {uid})"))

    # --- helpers --------------------------------------------------------------------------------
    def _write(self, fn, *args):
        """An attempt's state: retried through database faults until it commits (never lost)."""
        return run_until_committed(self.db, self.reactor, "calls", f"call attempt {fn.__name__}", fn, *args,
                                   alarm_after=self.write_alarm_s)

    def _guard(self, d):
        if not isinstance(d, defer.Deferred):
            return d
        d.addErrback(lambda f: log.failure("order calls: recording an attempt failed", f))
        self._inflight.add(d)
        d.addBoth(lambda r: (self._inflight.discard(d), r)[1])
        return d

    @defer.inlineCallbacks
    def settle(self):
        """For tests: wait until no claim or write is in flight."""
        while self._inflight:
            yield defer.DeferredList(list(self._inflight))


    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.reactor.seconds(), tz=timezone.utc)


def national(phone: str) -> str:
    """The number as dialled inside the country (e.g. 13805761234, 057687770110)."""
    try:
        p = phonenumbers.parse(phone, "CN")
        return "".join(c for c in phonenumbers.format_number(p, phonenumbers.PhoneNumberFormat.NATIONAL)
                       if c.isdigit())
    except phonenumbers.NumberParseException:
        return "".join(c for c in phone if c.isdigit())


def stage_call_tx(conn, now, *, order_id, team_id, member_id, phone, purpose, delivery_id=None, step_id=None) -> int:
    if delivery_id is None:       # no row of the caller's: one of our own, so every attempt is on record
        delivery_id = int(conn.execute(insert(deliveries).values(
            order_id=order_id, team_id=team_id, member_id=member_id, phone=phone, channel="voice",
            state="calling", attempts=0, detail="", created_at=now, updated_at=now)).inserted_primary_key[0])
    return cs.stage_call_tx(conn, now, order_id=order_id, team_id=team_id, member_id=member_id, phone=phone,
                            purpose=purpose, delivery_id=delivery_id, step_id=step_id)
