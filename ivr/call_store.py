"""Units of work for durable order calls: one `call_attempts` row per attempt.

A call is asked for by committing its first attempt `due` in the same transaction as the state
change that wants it (the order's fan-out, an escalation step).  The order caller claims due
attempts (`placing`, with the channel id the gateway chose) before the Originate is written,
marks them `ringing` when Asterisk shows the channel, and records the outcome together with the
next attempt (when the policy retries) or the end of the chain on the delivery / step row.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, insert, or_, select, update

from gateway.cluster.claims import Claimer, skip_locked
from gateway.orders import team_state as ts
from gateway.orders.store import record_call_outcome_tx, team_state_from_row
from gateway.storage.schema import call_attempts, deliveries, escalation_steps, order_teams, orders
from ivr.journal import appended_detail

IN_FLIGHT = ("placing", "ringing")
TOLERANCE = timedelta(milliseconds=20)
OUTCOMES = ("answered", "busy", "no_answer", "failed", "unknown", "cancelled")


@dataclass(frozen=True)
class Attempt:
    id: int
    order_id: int
    order_code: str
    team_id: int
    member_id: int | None
    delivery_id: int | None
    step_id: int | None
    purpose: str
    phone: str
    attempt: int
    channel_id: str | None
    state: str


def channel_id_for(at: "Attempt") -> str:
    """Chosen by the gateway before placing: unique per attempt (its row id), the same after a restart."""
    return f"yihu-{at.purpose}-{at.order_code}-{at.id}"


def stage_call_tx(conn, now: datetime, *, order_id: int, team_id: int, member_id: int | None, phone: str,
                  purpose: str, delivery_id: int | None = None, step_id: int | None = None) -> int:
    """The first attempt of a call, `due` now: to be run inside the transaction that asks for it."""
    from gateway.cluster.wakeups import notify_tx
    notify_tx(conn, "call")
    return int(conn.execute(insert(call_attempts).values(
        order_id=order_id, team_id=team_id, member_id=member_id, delivery_id=delivery_id, step_id=step_id,
        purpose=purpose, phone=phone, attempt=1, state="due", due_at=now, updated_at=now,
        detail="")).inserted_primary_key[0])


def _attempts(conn, where, limit: int | None = None, lock: bool = False) -> list[Attempt]:
    a = call_attempts
    q = (select(a, orders.c.code.label("order_code")).join(orders, orders.c.id == a.c.order_id)
         .where(where).order_by(a.c.due_at, a.c.id).limit(limit))
    if lock:
        q = skip_locked(q, conn, a)
    return [Attempt(r.id, r.order_id, r.order_code, r.team_id, r.member_id, r.delivery_id, r.step_id, r.purpose,
                    r.phone, r.attempt, r.channel_id, r.state) for r in conn.execute(q)]


def _why_not(conn, at: Attempt) -> str | None:
    """Why this call must not be placed any more (None: place it)."""
    st = conn.execute(select(orders.c.state).where(orders.c.id == at.order_id)).scalar()
    if st != "open":
        return f"order {st}"
    if at.purpose == "supervisor":
        return None
    if at.step_id is not None:
        # An escalation call is wanted until the team has said what ITS step's stage waits for
        # (a team that received the order but is late to arrive is still called).
        step = conn.execute(select(escalation_steps.c.stage, escalation_steps.c.order_team_id)
                            .where(escalation_steps.c.id == at.step_id)).first()
        if step is not None:
            row = conn.execute(select(order_teams, orders.c.rule).join(orders, orders.c.id == order_teams.c.order_id)
                               .where(order_teams.c.id == step.order_team_id)).first()
            if step.stage in ts.satisfied_stages(team_state_from_row(row, row.rule)):
                return f"team answered ({row.state})"
            return None
    team = conn.execute(select(order_teams.c.state).where(order_teams.c.order_id == at.order_id,
                                                          order_teams.c.team_id == at.team_id)).scalar()
    if team is not None and ts.RANK.get(team, -1) >= ts.RANK[ts.RECEIVED]:
        return f"team answered ({team})"
    return None


def claim_due_tx(conn, now: datetime, limit: int, busy_ids=(), claimer: Claimer = Claimer()
                 ) -> tuple[list[Attempt], list[int]]:
    """Due attempts become `placing` with their channel id, this node's; those no longer wanted
    are cancelled.  An attempt another node is claiming right now is skipped (PostgreSQL).
    Returns (attempts to place, ids of attempts cancelled)."""
    a = call_attempts
    # a wake-up may come a hair before the stored due time (float seconds vs. microseconds)
    rows = _attempts(conn, (a.c.state == "due") & (a.c.due_at <= now + TOLERANCE)
                     & claimer.free_or_mine(a.c.owner_node, now), limit + len(busy_ids), lock=True)
    out, cancelled = [], []
    for at in rows:
        if at.id in busy_ids:
            continue
        why = _why_not(conn, at)
        if why is not None:
            _end_chain(conn, at, "cancelled", f"not placed: {why}", now)
            cancelled.append(at.id)
            continue
        cid = channel_id_for(at)
        n = conn.execute(update(a).where(a.c.id == at.id, a.c.state == "due").values(
            state="placing", channel_id=cid, placed_at=now, updated_at=now, owner_node=claimer.node)).rowcount
        if n:
            out.append(Attempt(**{**at.__dict__, "channel_id": cid, "state": "placing"}))
        if len(out) >= limit:
            break
    return out, cancelled


def unplaced_tx(conn, attempt_id: int, now: datetime, why: str) -> None:
    """The Originate never left us (the AMI link was down): due again, the attempt not spent."""
    a = call_attempts
    conn.execute(update(a).where(a.c.id == attempt_id, a.c.state == "placing").values(
        state="due", channel_id=None, placed_at=None, updated_at=now, owner_node=None,
        detail=appended_detail(why, a.c.detail)))


def ringing_tx(conn, attempt_id: int, now: datetime) -> None:
    a = call_attempts
    conn.execute(update(a).where(a.c.id == attempt_id, a.c.state == "placing").values(state="ringing",
                                                                                       updated_at=now))


def in_flight_tx(conn, now: datetime | None = None, claimer: Claimer | None = None,
                 dead_only: bool = False) -> tuple[list[Attempt], int]:
    """Attempts in flight to reconcile: this node's and those of dead nodes (taken over: this
    node's from now on), never a live node's; `dead_only`: the periodic takeover.  Returns
    (attempts, how many were a dead node's)."""
    a = call_attempts
    if claimer is None:
        return _attempts(conn, a.c.state.in_(IN_FLIGHT)), 0
    which = claimer.dead_not_me(a.c.owner_node, now) if dead_only else claimer.mine_or_dead(a.c.owner_node, now)
    rows = _attempts(conn, a.c.state.in_(IN_FLIGHT) & which, lock=True)
    dead = set(conn.execute(select(a.c.id).where(a.c.id.in_([r.id for r in rows]),
                                                 claimer.dead_not_me(a.c.owner_node, now))).scalars()) if rows else set()
    if rows:
        conn.execute(update(a).where(a.c.id.in_([r.id for r in rows]),
                                     or_(a.c.owner_node.is_(None), a.c.owner_node != claimer.node))
                     .values(owner_node=claimer.node))
    return rows, len(dead)


def finish_tx(conn, attempt_id: int, outcome: str, detail: str, now: datetime, max_attempts: int,
              retry_on, delay: float) -> int | None:
    """Record an attempt's outcome; commit the next attempt with it when the policy retries.
    Returns the next attempt's id, or None when the chain ended."""
    a = call_attempts
    rows = _attempts(conn, a.c.id == attempt_id)
    if not rows or rows[0].state not in IN_FLIGHT:
        return None                      # recorded already (a reconciliation raced the response)
    at = rows[0]
    conn.execute(update(a).where(a.c.id == at.id).values(state=outcome, ended_at=now, updated_at=now,
                                                         detail=appended_detail(detail, a.c.detail)))
    line = f"attempt {at.attempt} {now.strftime('%H:%M:%S')}Z: {detail}"
    if at.delivery_id is not None:
        _on_delivery(conn, at.delivery_id, at.attempt, outcome, line, now)
    if outcome != "answered" and outcome in retry_on and at.attempt < max_attempts \
            and _why_not(conn, at) is None:
        return int(conn.execute(insert(a).values(
            order_id=at.order_id, team_id=at.team_id, member_id=at.member_id, delivery_id=at.delivery_id,
            step_id=at.step_id, purpose=at.purpose, phone=at.phone, attempt=at.attempt + 1, state="due",
            due_at=now + timedelta(seconds=delay), updated_at=now, detail="")).inserted_primary_key[0])
    _chain_ended(conn, at, outcome, now)
    return None


def _on_delivery(conn, delivery_id, attempt, outcome, line, now):
    # "answered" must not overwrite the order flow's no_answer (answered, but no key pressed).
    d = deliveries
    state = outcome
    if outcome == "answered":
        state = case((d.c.state == "no_answer", d.c.state), else_="answered")
    elif outcome in ("busy", "no_answer", "failed", "unknown"):
        state = "calling"            # until the chain ends
    conn.execute(update(d).where(d.c.id == delivery_id).values(attempts=attempt, state=state,
                                                               detail=appended_detail(line), updated_at=now))


def _chain_ended(conn, at: Attempt, outcome: str, now: datetime) -> None:
    if at.delivery_id is not None:
        if outcome == "answered":
            record_call_outcome_tx(conn, at.delivery_id, outcome, now, keep_no_answer=True)
        else:
            conn.execute(update(deliveries).where(deliveries.c.id == at.delivery_id).values(
                state=outcome, updated_at=now))
    if at.step_id is not None:      # the escalation step's outcome (both calls unanswered: team unreachable)
        from gateway.escalation.store import record_call_outcome_tx as step_outcome_tx
        step_outcome_tx(conn, at.step_id, outcome, now)


def _end_chain(conn, at: Attempt, outcome: str, why: str, now: datetime) -> None:
    a = call_attempts
    conn.execute(update(a).where(a.c.id == at.id).values(state=outcome, ended_at=now, updated_at=now,
                                                         detail=appended_detail(why, a.c.detail)))
    if at.delivery_id is not None:
        conn.execute(update(deliveries).where(deliveries.c.id == at.delivery_id).values(
            detail=appended_detail(f"attempt {at.attempt}: {why}"), updated_at=now))
    _chain_ended(conn, at, outcome, now)


def cancel_for_order_tx(conn, order_id: int, now: datetime, why: str) -> int:
    """Every attempt of the order not yet placed is cancelled; returns how many."""
    n = 0
    for at in _attempts(conn, (call_attempts.c.order_id == order_id) & (call_attempts.c.state == "due")):
        _end_chain(conn, at, "cancelled", why, now)
        n += 1
    return n
