"""Order units of work (run inside Database.run): create, fan-out bookkeeping, open orders."""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, func, insert, or_, select, update

from gateway.cluster.claims import Claimer, skip_locked
from gateway.escalation.config import EscalationConfig
from gateway.eventlog import record_event
from gateway.escalation.deadlines import plan_steps, response_minutes
from gateway.orders import directory_queries as dq
from gateway.orders import team_state as ts
from gateway.cluster.wakeups import notify_tx
from gateway.orders.codes import insert_order
from gateway.mode import drill_text
from gateway.orders.messages import order_sms, roster_check_sms
from gateway.orders.order import CreatedOrder, OrderRequest
from gateway.orders.times import utc
from gateway.storage.bulk import among, bulk_update, bulk_update_sparse, holding, read_held
from gateway.storage.schema import (audit_log, deliveries, escalation_steps, members, order_teams, orders,
                                     sms_messages, teams)


class NoTeams(LookupError):
    pass


class NoCommander(LookupError):
    """Named teams have no active commander on the roster: the order would reach nobody in charge."""

    def __init__(self, teams: list[str]):
        self.teams = teams
        super().__init__(f"team {', '.join(teams)} has no active commander on the roster; order not sent")


def create_order_tx(conn, req: OrderRequest, now: datetime, cfg: EscalationConfig,
                    rng: random.Random) -> CreatedOrder:
    """The order, its per-team rows, its deliveries (queued) and every escalation step: one commit."""
    if req.idempotency_key:
        oid = conn.execute(select(orders.c.id).where(orders.c.idempotency_key == req.idempotency_key)).scalar()
        if oid is not None:
            return existing_order_tx(conn, oid)
    found = dq.teams_by_target(conn, req.target.how, req.target.values)
    if not found:
        raise NoTeams(f"no team matches {req.target.describe()}")
    contacts = dq.team_commanders(conn, [t.id for t in found])
    leaderless = [t.code for t in found if dq.first_phone(contacts[t.id], "commander") is None]
    if leaderless:
        raise NoCommander(leaderless)
    order_id, code = insert_order(conn, dict(
        incident_ref=req.incident_ref, kind=req.kind, onscene_commander=req.onscene_commander(),
        text=req.text, rule=req.rule, voice=req.voice, major=req.major, drill=req.drill, state="open", created_at=now,
        created_by=req.created_by, idempotency_key=req.idempotency_key), rng)
    plan = plan_steps(req.rule, now, cfg)
    timers, step_rows, delivery_rows = [], [], []
    for team in found:
        people = contacts[team.id]
        state, reason = (ts.SENT, None) if people else (ts.UNREACHABLE, "no commander or deputy phone on the roster")
        ot_id = conn.execute(insert(order_teams).values(
            order_id=order_id, team_id=team.id, state=state, state_at=now, sent_at=now,
            reason=reason)).inserted_primary_key[0]
        timers.append((ot_id, plan[0].due_at.timestamp()))
        step_rows += [dict(order_team_id=ot_id, stage=p.stage, step=p.step, action=p.action, due_at=p.due_at,
                           state="pending", late=False) for p in plan]
        for m in people:
            delivery_rows.append(dict(order_id=order_id, team_id=team.id, member_id=m.id, phone=m.phone,
                                      channel="sms", state="queued", attempts=0, created_at=now, updated_at=now))
        if req.voice:
            # The call reads the order out and takes a keypad answer: commander and deputy both.
            for role in dq.COMMAND_ROLES:
                m = dq.first_phone(people, role)
                if m:
                    # Our request row ("requested", never "queued": the IVR's order caller writes its
                    # own voice row per call, starting "queued", which the sweep must not call again).
                    delivery_rows.append(dict(order_id=order_id, team_id=team.id, member_id=m.id, phone=m.phone,
                                              channel="voice", state="requested", attempts=0,
                                              detail="order call request (attempts: the IVR's row)",
                                              created_at=now, updated_at=now))
    conn.execute(insert(escalation_steps), step_rows)
    notify_tx(conn, "order")          # the fan-out and the escalation engines of every node (cluster/wakeups.py)
    if delivery_rows:
        conn.execute(insert(deliveries), delivery_rows)
    conn.execute(insert(audit_log).values(
        at=now, actor=req.created_by, action="order.created", subject=f"order {code}",
        detail={"order_id": order_id, "incident_ref": req.incident_ref, "kind": req.kind, "rule": req.rule,
                "target": req.target.describe(), "teams": [t.code for t in found], "voice": req.voice,
                "major": req.major, "drill": req.drill}))
    record_event(conn, "order.created", {"order_code": code, "order_id": order_id, "incident_ref": req.incident_ref,
                                         "kind": req.kind, "rule": req.rule,
                                         "onscene_commander": req.onscene_commander(), "teams": len(found),
                                         "voice": req.voice, "major": req.major, "drill": req.drill}, now)
    return CreatedOrder(order_id, code, now.timestamp(), tuple(t.id for t in found), tuple(timers))


def existing_order_tx(conn, order_id: int) -> CreatedOrder:
    """An order made before, as an idempotent repeat of its request answers it."""
    row = conn.execute(select(orders.c.code, orders.c.created_at).where(orders.c.id == order_id)).one()
    tids = conn.execute(select(order_teams.c.team_id).where(order_teams.c.order_id == order_id)).scalars()
    return CreatedOrder(order_id, row.code, utc(row.created_at).timestamp(), tuple(tids), existing=True)


def _queued_deliveries(conn, order_id: int | None, limit: int, claimer: Claimer, now: datetime):
    q = (select(deliveries.c.id, deliveries.c.order_id, deliveries.c.team_id, deliveries.c.member_id,
                deliveries.c.phone, deliveries.c.channel, orders.c.code, orders.c.kind, orders.c.incident_ref,
                orders.c.text, orders.c.onscene_commander, orders.c.rule, orders.c.created_at, orders.c.major,
                orders.c.drill)
         .join(orders, orders.c.id == deliveries.c.order_id)
         .where(or_(and_(deliveries.c.channel == "sms", deliveries.c.state == "queued",
                         # queued but already in the outbox (waiting for a modem): never twice,
                         # nor after a crash between the outbox's commit and ours
                         deliveries.c.handed_at.is_(None),
                         ~exists().where(sms_messages.c.delivery_id == deliveries.c.id)),
                    and_(deliveries.c.channel == "voice", deliveries.c.state == "requested")),
                orders.c.state == "open", claimer.free_or_mine(deliveries.c.owner_node, now))
         .order_by(deliveries.c.id).limit(limit))
    if order_id is not None:
        q = q.where(deliveries.c.order_id == order_id)
    # Two nodes' fan-outs at once: a delivery another node is handing right now is skipped, never
    # handed twice (on PostgreSQL; SQLite has one writer).
    return conn.execute(skip_locked(q, conn, deliveries)).all()


def _drop_removed_members(conn, rows, now: datetime):
    """Removed from the roster since the order was created: not sent, marked failed (the roster
    decides who is called)."""
    if not rows:
        return rows
    removed = {r.id for r in rows if r.member_id is not None} and set(conn.execute(
        select(deliveries.c.id).join(members, members.c.id == deliveries.c.member_id)
        .join(teams, teams.c.id == members.c.team_id)
        .where(deliveries.c.id.in_([r.id for r in rows]),
               or_(members.c.active.is_(False), teams.c.active.is_(False)))).scalars())
    if removed:
        conn.execute(update(deliveries).where(deliveries.c.id.in_(removed))
                     .values(state="failed", detail="not sent: removed from the roster", updated_at=now))
    return [r for r in rows if r.id not in removed]


@dataclass
class Handed:
    messages: list          # records for the outbox's adopt()
    calls: int
    refused: int


def hand_deliveries_tx(conn, order_id: int | None, now: datetime, cfg: EscalationConfig, stage_sms, stage_call,
                       limit: int = 2000, claimer: Claimer = Claimer()) -> Handed:
    """The transactional outbox of an order: each queued delivery changes state in the SAME
    transaction that writes what it causes: the SMS message with its segments (the delivery
    stays `queued`, handed_at set, until a modem accepts it) or the first call attempt (delivery
    `calling`).  A crash leaves either both or neither."""
    out = Handed([], 0, 0)
    for r in _drop_removed_members(conn, _queued_deliveries(conn, order_id, limit, claimer, now), now):
        values = dict(attempts=deliveries.c.attempts + 1, updated_at=now, owner_node=claimer.node)
        if r.channel == "sms":
            minutes = response_minutes(r.rule, utc(r.created_at), cfg)
            text = drill_text(roster_check_sms(r.code) if r.kind == "roster_check"
                              else order_sms(r.code, r.incident_ref, r.text, r.onscene_commander or "", r.rule,
                                             minutes, cfg.major_report_minutes if r.major else 0),
                              r.drill)
            try:
                rec = stage_sms(conn, now, r.phone, text, purpose="order", order_id=r.order_id, delivery_id=r.id)
            except ValueError as e:        # text the network cannot carry: refused, said, not retried
                values.update(state="failed", detail=f"SMS refused: {e}")
                out.refused += 1
            else:
                out.messages.append(rec)
                # Still `queued`: in the outbox, not yet accepted by a modem.  The SMS store marks
                # it `sent` in the transaction that records the modem's +CMGS for its first segment.
                values.update(handed_at=now, detail=f"sms {rec['id']} in the outbox")
        else:
            stage_call(conn, now, order_id=r.order_id, team_id=r.team_id, member_id=r.member_id, phone=r.phone,
                       purpose="order", delivery_id=r.id)
            values.update(state="calling", detail="")
            out.calls += 1
        conn.execute(update(deliveries).where(deliveries.c.id == r.id).values(**values))
    return out


def delivered_by_sms_tx(conn, now: datetime) -> int:
    """Teams still `sent` whose order SMS the network reports delivered (status report, kept by the
    SMS layer in sms_messages against our delivery row) become `delivered`."""
    rows = conn.execute(
        select(order_teams.c.id, func.min(sms_messages.c.updated_at))
        .join(orders, orders.c.id == order_teams.c.order_id)
        .join(deliveries, and_(deliveries.c.order_id == order_teams.c.order_id,
                               deliveries.c.team_id == order_teams.c.team_id, deliveries.c.channel == "sms"))
        .join(sms_messages, sms_messages.c.delivery_id == deliveries.c.id)
        .where(order_teams.c.state == "sent", orders.c.state == "open", sms_messages.c.state == "delivered")
        .group_by(order_teams.c.id)).all()
    for ot, at in rows:
        _row, old = load_team_state(conn, ot)
        save_team_state(conn, ot, old, ts.on_delivered(old, utc(at) or now), now)
    return len(rows)


def requeue_handing_tx(conn, now: datetime, claimer: Claimer = Claimer(), dead_only: bool = False) -> tuple[int, int]:
    """Rows left `handing` by a gateway of the two-transaction hand-off (before call_attempts):
    handed again once.  Only this node's own rows and dead nodes' (or unowned, from before
    owners), never a live node's; `dead_only`: the periodic takeover.  Returns (rows handed
    again, of which taken from a dead node)."""
    dead = claimer.dead_not_me(deliveries.c.owner_node, now)
    which = dead if dead_only else claimer.mine_or_dead(deliveries.c.owner_node, now)
    taken = conn.execute(select(func.count()).select_from(deliveries)
                         .where(deliveries.c.state == "handing", dead)).scalar() or 0
    n = conn.execute(update(deliveries).where(deliveries.c.state == "handing", deliveries.c.channel == "sms", which)
                     .values(state="queued", updated_at=now, owner_node=None)).rowcount
    n += conn.execute(update(deliveries).where(deliveries.c.state == "handing", deliveries.c.channel == "voice", which)
                      .values(state="requested", updated_at=now, owner_node=None)).rowcount
    return n, taken


def open_order_teams_for_team(conn, team_id: int, code: str | None = None, limit: int | None = None) -> list:
    """(order_team id, order_id, order code, rule) of the team's open orders, newest first; with
    `code`, only that order.  Indexed lookups: a team may have hundreds of open orders."""
    q = (select(order_teams.c.id, order_teams.c.order_id, orders.c.code, orders.c.rule, orders.c.major)
         .join(orders, orders.c.id == order_teams.c.order_id)
         .where(and_(order_teams.c.team_id == team_id, orders.c.state == "open"))
         .order_by(orders.c.created_at.desc(), orders.c.id.desc()))
    if code is not None:
        q = q.where(orders.c.code == code)
    if limit is not None:
        q = q.limit(limit)
    return conn.execute(q).all()


# --- the per-team state, loaded and saved -----------------------------------------------------

_STATE_FIELDS = ("state", "delivered_at", "received_at", "assembled_at", "arrived_at", "finished_at",
                 "answered_by", "reason", "report", "form_complete")


def team_state_from_row(row, rule: str) -> ts.TeamOrderState:
    return ts.TeamOrderState(
        rule=rule, state=row.state, delivered_at=utc(row.delivered_at), received_at=utc(row.received_at),
        assembled_at=utc(row.assembled_at), arrived_at=utc(row.arrived_at), finished_at=utc(row.finished_at),
        answered_by=row.answered_by, reason=row.reason, report=row.report, form_complete=bool(row.form_complete))


def load_team_state(conn, order_team_id: int):
    """(order_teams row, order row, TeamOrderState); the row is locked on PostgreSQL."""
    q = (select(order_teams, orders.c.code, orders.c.rule, orders.c.state.label("order_state"),
                orders.c.created_at.label("order_created_at"), orders.c.incident_ref)
         .join(orders, orders.c.id == order_teams.c.order_id).where(order_teams.c.id == order_team_id))
    if conn.dialect.name == "postgresql":
        # Two answers for one team (commander and deputy at once) must not both read the old state.
        q = q.with_for_update(of=order_teams)
    row = conn.execute(q).first()
    return row, team_state_from_row(row, row.rule)


def load_team_states(conn, order_team_ids) -> dict[int, ts.TeamOrderState]:
    """Many at once (the escalation engine's claims); locked on PostgreSQL like load_team_state."""
    ids = sorted(order_team_ids)      # one lock order for everyone: no deadlock between claims
    if not ids:
        return {}
    q = (select(order_teams, orders.c.rule).join(orders, orders.c.id == order_teams.c.order_id)
         .where(among(conn, order_teams.c.id, ids)).order_by(order_teams.c.id))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(of=order_teams)
    return {r.id: team_state_from_row(r, r.rule) for r in conn.execute(q)}


def team_state_changes(old: ts.TeamOrderState, new: ts.TeamOrderState, now: datetime) -> dict:
    """The columns save_team_state writes (state_at when the state word changed)."""
    changes = {f: getattr(new, f) for f in _STATE_FIELDS if getattr(new, f) != getattr(old, f)}
    if "state" in changes:
        changes["state_at"] = now
    return changes


def save_team_state(conn, order_team_id: int, old: ts.TeamOrderState, new: ts.TeamOrderState,
                    now: datetime) -> None:
    changes = team_state_changes(old, new, now)
    if not changes:
        return
    conn.execute(update(order_teams).where(order_teams.c.id == order_team_id).values(**changes))


def save_team_changes_many(conn, changes: dict[int, dict]) -> None:
    """{order_team_id: {column: value}}: a batch of answers' team states in one statement
    (gateway/storage/bulk.py), not one each."""
    bulk_update_sparse(conn, order_teams, "id", changes)


def cancel_stages_many(conn, cancels: list[dict]) -> None:
    """[{ot, stage, why, now}]: the pending steps of those stages cancelled, in list order (the
    first reason given stays), one executemany for all."""
    bulk_update(conn, escalation_steps, ("order_team_id", "stage"),
                [{"order_team_id": c["ot"], "stage": c["stage"], "state": "cancelled", "fired_at": c["now"],
                  "reason": c["why"]} for c in cancels], where={"state": "pending"}, keep="first")


def cancel_satisfied_steps_tx(conn, order_team_id: int, state: ts.TeamOrderState, why: str,
                              now: datetime) -> datetime | None:
    """Stop the ladders of the stages the team has answered; return the next pending due time."""
    done = ts.satisfied_stages(state)
    if done:
        conn.execute(update(escalation_steps)
                     .where(escalation_steps.c.order_team_id == order_team_id,
                            escalation_steps.c.state == "pending", escalation_steps.c.stage.in_(done))
                     .values(state="cancelled", fired_at=now, reason=why))
    return next_due_tx(conn, order_team_id)


def next_due_many_tx(conn, order_team_ids) -> dict[int, datetime | None]:
    ids = list(order_team_ids)
    out: dict[int, datetime | None] = dict.fromkeys(ids)
    if ids:
        for ot, due in conn.execute(select(escalation_steps.c.order_team_id, func.min(escalation_steps.c.due_at))
                                    .where(among(conn, escalation_steps.c.order_team_id, ids),
                                           escalation_steps.c.state == "pending")
                                    .group_by(escalation_steps.c.order_team_id)):
            out[ot] = utc(due)
    return out


def next_due_many_later(conn, order_team_ids, then) -> None:
    """next_due_many_tx for a caller that acts on the times only once committed: then(times).
    With writes held (bulk.together), the read goes with them, no round trip of its own."""
    ids = list(order_team_ids)
    if not ids or not holding(conn):
        then(next_due_many_tx(conn, ids))
        return

    def found(rows):
        out: dict[int, datetime | None] = dict.fromkeys(ids)
        for ot, due in rows:
            out[ot] = utc(due)
        then(out)
    read_held(conn, escalation_steps, "SELECT order_team_id, min(due_at) FROM escalation_steps WHERE {among} "
              "AND state = 'pending' GROUP BY order_team_id", ("order_team_id", ids), found)


def next_due_tx(conn, order_team_id: int) -> datetime | None:
    return utc(conn.execute(select(func.min(escalation_steps.c.due_at))
                            .where(escalation_steps.c.order_team_id == order_team_id,
                                   escalation_steps.c.state == "pending")).scalar())


def record_call_outcome_tx(conn, delivery_id: int, outcome: str, now: datetime, keep_no_answer: bool = False) -> None:
    """The order call ended (the order caller recorded each attempt on this same row); answered
    means the team has the order (delivered).  keep_no_answer: the order flow's no_answer
    (answered, no key pressed) stays."""
    q = update(deliveries).where(deliveries.c.id == delivery_id)
    if keep_no_answer:
        q = q.where(deliveries.c.state != "no_answer")
    conn.execute(q.values(state=outcome, updated_at=now))
    if outcome != "answered":
        return
    d = conn.execute(select(deliveries.c.order_id, deliveries.c.team_id).where(deliveries.c.id == delivery_id)).first()
    ot = conn.execute(select(order_teams.c.id).where(order_teams.c.order_id == d.order_id,
                                                     order_teams.c.team_id == d.team_id)).scalar()
    if ot is not None:
        _row, old = load_team_state(conn, ot)
        save_team_state(conn, ot, old, ts.on_delivered(old, now), now)
