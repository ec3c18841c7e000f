"""Closing an order: one transaction that stops everything the order still owes.

The order becomes `closed`; its pending escalation steps, every SMS segment not yet submitted
(the modem bank refuses to submit a segment whose row is no longer `queued`), every call
attempt not yet placed, and the deliveries not yet handed on are cancelled.  The answer says
how many of each, so the dispatcher knows what did not go out.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import insert, select, update

from gateway.eventlog import record_event
from gateway.storage.schema import (audit_log, deliveries, escalation_steps, order_teams, orders, sms_messages,
                                    sms_segments)
from ivr.call_store import cancel_for_order_tx
from sms.store import OPEN_MESSAGE_STATES, message_state


@dataclass(frozen=True)
class Closed:
    escalation_steps_cancelled: int
    sms_segments_cancelled: int
    call_attempts_cancelled: int
    deliveries_cancelled: int

    def as_dict(self) -> dict:
        return asdict(self)


def close_order_tx(conn, code: str, actor: str, now: datetime) -> Closed | None:
    oid = conn.execute(select(orders.c.id).where(orders.c.code == code, orders.c.state == "open")).scalar()
    if oid is None:
        return None
    why = f"order closed by {actor}"
    conn.execute(update(orders).where(orders.c.id == oid).values(state="closed", closed_at=now))
    ots = select(order_teams.c.id).where(order_teams.c.order_id == oid)
    steps = conn.execute(update(escalation_steps).where(escalation_steps.c.order_team_id.in_(ots),
                                                        escalation_steps.c.state == "pending")
                         .values(state="cancelled", fired_at=now, reason=why)).rowcount
    segments = _cancel_sms(conn, oid, now, why)
    calls = cancel_for_order_tx(conn, oid, now, why)
    handed_on = conn.execute(update(deliveries).where(deliveries.c.order_id == oid,
                                                      deliveries.c.state.in_(("queued", "requested", "handing")))
                             .values(state="cancelled", detail=why, updated_at=now)).rowcount
    closed = Closed(steps, segments, calls, handed_on)
    # Dispatch sees the close, and what did not go out, committed with it (gateway/eventlog.py).
    record_event(conn, "order.closed", {"order_code": code, "order_id": oid, "by": actor, **closed.as_dict()}, now)
    conn.execute(insert(audit_log).values(at=now, actor=actor, action="order.closed", subject=f"order {code}",
                                          detail={"order_id": oid, **closed.as_dict()}))
    return closed


def _cancel_sms(conn, order_id: int, now: datetime, why: str) -> int:
    m, s = sms_messages, sms_segments
    open_ids = select(m.c.id).where(m.c.order_id == order_id, m.c.state.in_(OPEN_MESSAGE_STATES))
    n = conn.execute(update(s).where(s.c.message_id.in_(open_ids), s.c.state == "queued")
                     .values(state="cancelled", last_error=why[:200], updated_at=now)).rowcount
    if n:
        for mid in conn.execute(open_ids).scalars().all():
            states = conn.execute(select(s.c.state).where(s.c.message_id == mid)).scalars().all()
            conn.execute(update(m).where(m.c.id == mid).values(state=message_state(states), updated_at=now))
    return n
