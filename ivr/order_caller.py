"""The order caller (IOrderCaller): places the voice call that reads an order, with retries.

Each call_order keeps one `deliveries` row (channel 'voice') for the recipient: created before the
first attempt, and updated after each attempt (attempts, state, a line of detail per attempt),
committed before the next step.  The call goes out as an Async AMI Originate with a ChannelId of
our own (it becomes the channel's Uniqueid, hence agi_uniqueid in the order flow) and the order
code, the dialled phone, the delivery id and a one-time token (ivr/tokens.py) as channel
variables; Asterisk runs `gateway-out,order`, whose AGI is the order flow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import phonenumbers
from sqlalchemy import case, insert, update
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from gateway import metrics
from gateway.interfaces import IOrderCaller, OriginateResult
from gateway.storage.schema import deliveries
from ivr.journal import appended_detail

log = Logger()

# OriginateResponse Reason (Asterisk's control frame of the outcome)
REASONS = {4: "answered", 5: "busy", 3: "no_answer", 0: "failed", 1: "failed", 8: "failed"}


def outcome_of(result: OriginateResult) -> str:
    """answered / busy / no_answer / failed; a Success response is answered whatever the reason."""
    if result.success and result.reason in (0, 4):
        return "answered"
    return REASONS.get(result.reason, "failed")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3                    # calls in all, the first included
    delay: float = 60.0                  # seconds between attempts
    retry_on: frozenset = field(default_factory=lambda: frozenset({"busy", "no_answer", "failed"}))
    ring_timeout_ms: int = 30000         # Originate Timeout: how long the phone rings


@implementer(IOrderCaller)
class OrderCaller:
    def __init__(self, reactor, originator, db, *, policy: RetryPolicy = RetryPolicy(),
                 channel_template: str = "PJSIP/{national}@trunk", context: str = "gateway-out",
                 exten: str = "order", caller_id: str | None = '"Command Center" <057687770110>',
                 tokens=None):
        self.reactor = reactor
        self.originator = originator      # IOriginator
        self.db = db
        self.policy = policy
        self.channel_template = channel_template
        self.context = context
        self.exten = exten
        self.caller_id = caller_id
        self.tokens = tokens              # CallTokens: every Originate carries a fresh one

    def call_order(self, order_code: str, phone: str, *, order_id: int, team_id: int,
                   member_id: int | None = None, purpose: str = "order",
                   delivery_id: int | None = None) -> Deferred:
        return Deferred.fromCoroutine(self._call(order_code, phone, order_id, team_id, member_id, purpose,
                                                 delivery_id))

    async def _call(self, code, phone, order_id, team_id, member_id, purpose, delivery_id=None) -> str:
        if delivery_id is None:       # no row of the caller's: one of our own, so every attempt is on record
            delivery_id = await self.db.run(_new_delivery, order_id, team_id, member_id, phone, self._now())
        outcome = "failed"
        for attempt in range(1, self.policy.attempts + 1):
            channel_id = f"yihu-{purpose}-{code}-{delivery_id}-{attempt}"
            outcome, detail = await self._attempt(code, phone, delivery_id, channel_id)
            line = f"attempt {attempt} {self._now().strftime('%H:%M:%S')}Z: {detail}"
            await self.db.run(_attempted, delivery_id, attempt, outcome, line, self._now())
            metrics.ORDER_CALLS.labels(outcome).inc()
            log.info("order call {code} to {phone} (delivery {delivery}) attempt {attempt}: {detail}",
                     code=code, phone=phone, delivery=delivery_id, attempt=attempt, detail=detail)
            if outcome == "answered" or outcome not in self.policy.retry_on:
                break
            if attempt < self.policy.attempts:
                await deferLater(self.reactor, self.policy.delay, lambda: None)
        return outcome

    async def _attempt(self, code, phone, delivery_id, channel_id) -> tuple[str, str]:
        try:
            result = await self.originator.originate(
                self.channel_template.format(phone=phone.lstrip("+"), national=national(phone)),
                context=self.context,
                exten=self.exten, priority=1,
                variables=self._variables(code, phone, delivery_id),
                channel_id=channel_id, caller_id=self.caller_id, timeout_ms=self.policy.ring_timeout_ms)
        except Exception as e:  # noqa: BLE001 - AMI down, refused, timed out: the attempt failed
            log.warn("order call {code} to {phone}: originate failed: {why}", code=code, phone=phone,
                     why=f"{e.__class__.__name__}: {e}")
            return "failed", f"failed (originate: {e.__class__.__name__}: {str(e)[:120]})"
        outcome = outcome_of(result)
        return outcome, f"{outcome} (reason {result.reason}, channel id {channel_id})"

    def _variables(self, code, phone, delivery_id) -> dict[str, str]:
        variables = {"ORDER_CODE": code, "YIHU_PHONE": phone, "YIHU_DELIVERY": str(delivery_id)}
        if self.tokens is not None:
            variables.update(self.tokens.variables(str(delivery_id), phone, self.reactor.seconds(),
                                                   self.policy.ring_timeout_ms / 1000.0))
        return variables

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


def _new_delivery(conn, order_id, team_id, member_id, phone, now) -> int:
    r = conn.execute(insert(deliveries).values(order_id=order_id, team_id=team_id, member_id=member_id,
                                               phone=phone, channel="voice", state="queued", attempts=0,
                                               detail="", created_at=now, updated_at=now))
    return int(r.inserted_primary_key[0])


def _attempted(conn, delivery_id, attempt, outcome, line, now):
    # One UPDATE, no read-modify-write: the order flow may mark the row no_answer concurrently,
    # and "answered" must not overwrite that (answered, but no key pressed).
    state = outcome
    if outcome == "answered":
        state = case((deliveries.c.state == "no_answer", deliveries.c.state), else_="answered")
    conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(
        attempts=attempt, state=state, detail=appended_detail(line), updated_at=now))
