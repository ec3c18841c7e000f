"""The age of the oldest work due but not done, database-wide (yihu_outbox_oldest_seconds{kind}).

Every node shares the same outbox, so every node reports the same figure: an alert on it fires
whichever node Prometheus reaches, and a growing age while nodes are up means work nobody claims
(a node with no modem for the SMS, no AMI link for the calls).  The SQL is pure (no Twisted);
`OutboxAges` refreshes the gauge on the injected clock.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import and_, func, or_, select
from twisted.internet import task
from twisted.logger import Logger

from gateway import metrics
from gateway.storage.schema import call_attempts, deliveries, escalation_steps, sms_messages, sms_segments

log = Logger()

KINDS = ("sms_segment", "delivery", "call_attempt", "escalation_step")


def _utc(v):
    return v if v is None or v.tzinfo else v.replace(tzinfo=timezone.utc)


def oldest_tx(conn, now: datetime) -> dict[str, float]:
    """kind → seconds since the oldest row of that kind fell due and is not done yet (0: none)."""
    seg = conn.execute(select(func.min(sms_messages.c.created_at))
                       .join(sms_segments, sms_segments.c.message_id == sms_messages.c.id)
                       .where(sms_messages.c.state.in_(("queued", "sending")),
                              sms_segments.c.state.in_(("queued", "submitting", "unknown")))).scalar()
    dl = conn.execute(select(func.min(deliveries.c.created_at)).where(or_(
        and_(deliveries.c.channel == "sms", deliveries.c.state == "queued", deliveries.c.handed_at.is_(None)),
        deliveries.c.state.in_(("requested", "handing"))))).scalar()
    ca = conn.execute(select(func.min(call_attempts.c.due_at))
                      .where(call_attempts.c.state.in_(("due", "placing")), call_attempts.c.due_at <= now)).scalar()
    es = conn.execute(select(func.min(escalation_steps.c.due_at))
                      .where(escalation_steps.c.state.in_(("pending", "firing")),
                             escalation_steps.c.due_at <= now)).scalar()
    return {kind: max(0.0, (now - _utc(at)).total_seconds()) if at is not None else 0.0
            for kind, at in zip(KINDS, (seg, dl, ca, es))}


class OutboxAges:
    """Refreshes yihu_outbox_oldest_seconds{kind} every `every` seconds."""

    def __init__(self, clock, db, every: float = 10.0):
        self.clock, self.db, self.every = clock, db, every
        self._loop = task.LoopingCall(self.refresh)
        self._loop.clock = clock

    def start(self):
        self._loop.start(self.every, now=True)

    def stop(self):
        if self._loop.running:
            self._loop.stop()

    def refresh(self):
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

        def publish(ages):
            for kind, age in ages.items():
                metrics.OUTBOX_OLDEST.labels(kind=kind).set(round(age, 1))
            return ages
        d = self.db.run(oldest_tx, now).addCallback(publish)
        # a failed look is logged; the loop goes on (the next look tells the truth again)
        d.addErrback(lambda f: log.warn("outbox ages: the database did not answer ({err})", err=f.getErrorMessage()))
        return d
