"""Test rig for orders, feedback and escalation: fakes of the seams and a small directory."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from twisted.internet import defer, task
from zope.interface import implementer

from gateway.escalation.config import EscalationConfig
from gateway.escalation.engine import EscalationEngine
from gateway.feedback.engine import FeedbackEngine
from gateway.interfaces import IEventSink, InboundSms, ISmsOutbox, KeypadAnswer, OriginateResult
from gateway.orders.fanout import FanOut
from gateway.orders.order import OrderRequest, Target
from gateway.orders.service import OrderService
from gateway.storage.schema import duty_roster, inbound_raw, member_phones, members, teams
from ivr.order_caller import OrderCaller, RetryPolicy

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(y, mo, d, h, mi, s=0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=SHANGHAI).astimezone(timezone.utc)


@implementer(ISmsOutbox)
class FakeOutbox:
    def __init__(self):
        self.sent = []
        self._ids = itertools.count(1)

    def enqueue(self, phone, text, *, purpose, order_id=None, delivery_id=None):
        self.sent.append(dict(phone=phone, text=text, purpose=purpose, order_id=order_id, delivery_id=delivery_id))
        return defer.succeed(next(self._ids))

    def stage_tx(self, conn, now, phone, text, *, purpose, order_id=None, delivery_id=None):
        return dict(id=next(self._ids), phone=phone, text=text, purpose=purpose, order_id=order_id,
                    delivery_id=delivery_id)

    def adopt(self, records):
        self.sent.extend(records)

    def to(self, phone, purpose=None):
        return [m["text"] for m in self.sent if m["phone"] == phone and (purpose is None or m["purpose"] == purpose)]

    def purposes(self, purpose):
        return [m for m in self.sent if m["purpose"] == purpose]


class FakeCaller(OrderCaller):
    """The real, durable order caller over an Asterisk that answers every call with `outcome`;
    one attempt per call (the ladder, not the retry policy, is what these tests look at)."""

    REASON = {"answered": 4, "busy": 5, "no_answer": 3, "failed": 0}

    def __init__(self, clock, db, outcome="no_answer"):
        super().__init__(clock, self, db, policy=RetryPolicy(attempts=1))
        self.calls = []
        self.outcome = outcome

    def originate(self, channel, *, context, exten, priority=1, variables=None, channel_id=None,
                  caller_id=None, timeout_ms=30000):
        purpose = channel_id.split("-")[1]
        self.calls.append(dict(code=variables["ORDER_CODE"], phone=variables["YIHU_PHONE"], purpose=purpose,
                               channel_id=channel_id))
        return defer.succeed(OriginateResult(self.outcome == "answered", self.REASON[self.outcome]))

    def to(self, phone, purpose=None):
        return [c for c in self.calls if c["phone"] == phone and (purpose is None or c["purpose"] == purpose)]


@implementer(IEventSink)
class FakeEvents:
    def __init__(self):
        self.events = []

    def publish(self, kind, payload):
        self.events.append((kind, payload))

    def committed(self, events):
        """As a Database event listener: the events a commit recorded."""
        self.events += [(e.kind, e.payload) for e in events]

    def of(self, kind):
        return [p for k, p in self.events if k == kind]


SUPERVISOR = "+8613900000000"


def phone(team_no: int, role: str) -> str:
    return f"+86138{team_no:04d}{'0001' if role == 'commander' else '0002'}"


def seed_directory_tx(conn, n_teams=3, now=None, township_of=lambda i: "城关镇"):
    now = now or datetime(2026, 1, 1, tzinfo=timezone.utc)
    ids = []
    for i in range(1, n_teams + 1):
        tid = conn.execute(insert(teams).values(code=f"PUB-{i:02d}", name=f"第{i}救援队", kind="public",
                                                township=township_of(i), created_at=now)).inserted_primary_key[0]
        ids.append(tid)
        for role, name in (("commander", f"指挥{i}"), ("deputy", f"副指挥{i}")):
            mid = conn.execute(insert(members).values(team_id=tid, name=name, role=role)).inserted_primary_key[0]
            conn.execute(insert(member_phones).values(member_id=mid, e164=phone(i, role), rank=0))
    conn.execute(insert(duty_roster).values(name="值班长王", e164=SUPERVISOR, starts_at=now,
                                            ends_at=now + timedelta(days=3650)))
    return ids


def raw_tx(conn, channel, sender, text, at):
    return conn.execute(insert(inbound_raw).values(channel=channel, sender=sender, text=text, received_at=at,
                                                   state="new")).inserted_primary_key[0]


def raw_state_tx(conn, raw_id):
    return conn.execute(select(inbound_raw.c.state, inbound_raw.c.note).where(inbound_raw.c.id == raw_id)).first()


class Rig:
    """The domain wired to fakes; a Clock for time, the real database."""

    def __init__(self, db, start: datetime, cfg: EscalationConfig | None = None, clock: task.Clock | None = None):
        self.db = db
        self.cfg = cfg or EscalationConfig()
        self.clock = clock or task.Clock()
        if clock is None:
            self.clock.advance(start.timestamp())
        self.outbox, self.caller, self.events = FakeOutbox(), FakeCaller(self.clock, db), FakeEvents()
        db.add_event_listener(self.events.committed)
        self.escalation = EscalationEngine(db, self.clock, self.outbox, self.caller, self.cfg)
        self.fanout = FanOut(db, self.clock, self.outbox, self.caller, self.cfg)
        self.orders = OrderService(db, self.clock, self.fanout, self.escalation, self.cfg)
        self.feedback = FeedbackEngine(db, self.outbox, self.escalation, self.cfg)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    @defer.inlineCallbacks
    def start(self):
        yield self.escalation.start()

    def stop(self):
        self.escalation.stop()
        self.fanout.stop()

    @defer.inlineCallbacks
    def send(self, teams_=("PUB-01", "PUB-02", "PUB-03"), rule="same_township", voice=False, kind="rescue",
             major=False):
        created = yield self.orders.send(OrderRequest("INC-1", kind, "白塔镇山体滑坡，速派人员", Target("teams", tuple(teams_)),
                                                      rule, voice=voice, created_by="cli:test", major=major))
        yield self.fanout.send(created.order_id)
        yield self.fanout.settle()
        return created

    @defer.inlineCallbacks
    def advance_to(self, at: datetime):
        """Move the Clock to `at`, stopping at every timer on the way (so each fires at its own
        time, as on the real reactor) and waiting for the database work after each."""
        target = at.timestamp()
        assert target >= self.clock.seconds(), "time goes forward only"
        while True:
            # stop at the escalation timer only; the refresh/auditor loops run once per stretch
            call = self.escalation.timers._call
            pending = [call.getTime()] if call is not None and call.active() else []
            nxt = min([t for t in pending if t <= target], default=None)
            self.clock.advance((nxt if nxt is not None else target) - self.clock.seconds())
            yield self.escalation.settle()
            yield self.fanout.settle()
            yield self.caller.settle()
            if nxt is None:
                break

    @defer.inlineCallbacks
    def sms(self, sender, text, at=None):
        at = at or self.now()
        raw_id = yield self.db.run(raw_tx, "sms", sender, text, at)
        outcome = yield self.feedback.sms_received(InboundSms(raw_id, sender, text, at, "modem0"))
        return outcome, raw_id

    @defer.inlineCallbacks
    def keypad(self, caller, digit, code=None, at=None):
        at = at or self.now()
        raw_id = yield self.db.run(raw_tx, "keypad", caller, digit, at)
        outcome = yield self.feedback.keypad_answer(KeypadAnswer(raw_id, caller, digit, "call-1", at, code))
        return outcome
