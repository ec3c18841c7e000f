"""Escalation units of work (run inside Database.run).

A step goes pending -> fired in the transaction that also writes its SMS and call attempts (the
engine's _claim_and_send_tx); `firing` is only ever seen inside it, or left by an older gateway,
and such a step is fired again (at least once, never at most once).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, func, insert, or_, select, update

from gateway.cluster.claims import Claimer, skip_locked
from gateway.escalation.config import EscalationConfig
from gateway.escalation.deadlines import RECEIPT, SITUATION, local_hhmm, plan_situation_steps, stage_deadlines
from gateway.eventlog import record_events
from gateway.orders import directory_queries as dq
from gateway.orders import store as ostore
from gateway.orders import team_state as ts
from gateway.orders.times import utc
from gateway.storage.bulk import among
from gateway.storage.schema import audit_log, escalation_steps, order_teams, orders, teams

# A timer may wake a hair before the stored due time (float seconds vs. microseconds).
TOLERANCE = timedelta(milliseconds=5)

STAGE_EN = {"receipt": "receipt", "assembly": "assembled", "arrival": "arrived", "report": "finished report"}


@dataclass
class FiredStep:
    step_id: int
    order_team_id: int
    order_id: int
    order_code: str
    team_id: int
    team_code: str
    team_name: str
    stage: str
    step: int
    action: str
    due_at: datetime
    late: bool
    reason: str
    team_state: str
    finished_without_report: bool
    contacts: list = field(default_factory=list)      # commanders then deputies (dq.Member)
    call_to: dq.Member | None = None      # the IVR's order caller keeps the call's deliveries row


@dataclass
class SupervisorAlert:
    order_id: int
    order_code: str
    incident_ref: str
    stage: str
    teams: list                      # [(team_id, code, name, state)]
    supervisor: dq.Supervisor | None
    step_ids: list


@dataclass
class Claim:
    fired: list
    alerts: list
    next_due: dict                   # order_team_id -> datetime | None
    cancelled: int = 0


def release_firing_tx(conn, now: datetime, claimer: Claimer, dead_only: bool = False) -> tuple[int, list]:
    """`firing` steps of this node (nothing of ours is in flight at start) and of dead nodes go
    back to pending (they fire at once, marked late); a live node's are never touched.
    Returns (how many were a dead node's, the order-teams of the steps released)."""
    es = escalation_steps
    dead = claimer.dead_not_me(es.c.owner_node, now)
    which = and_(es.c.state == "firing", dead if dead_only else claimer.mine_or_dead(es.c.owner_node, now))
    rows = conn.execute(select(es.c.id, es.c.order_team_id, dead.label("dead")).where(which)).all()
    if rows:
        conn.execute(update(es).where(among(conn, es.c.id, [r.id for r in rows]), es.c.state == "firing")
                     .values(state="pending", fired_at=None, owner_node=None))
    return sum(1 for r in rows if r.dead), sorted({r.order_team_id for r in rows})


def load_pending_tx(conn, now: datetime, claimer: Claimer = Claimer()):
    """At start: this node's `firing` steps (and dead nodes') go back to pending.
    Returns ([(order_team_id, earliest due)], watermark)."""
    release_firing_tx(conn, now, claimer)
    rows = conn.execute(select(escalation_steps.c.order_team_id, func.min(escalation_steps.c.due_at))
                        .where(escalation_steps.c.state == "pending")
                        .group_by(escalation_steps.c.order_team_id)).all()
    top = conn.execute(select(func.max(escalation_steps.c.id))).scalar() or 0
    return [(r[0], utc(r[1])) for r in rows], top


def new_steps_tx(conn, watermark: int, unseen=()):
    """Steps committed since the last look (orders sent from the CLI, another node): ids above
    `watermark`, and the ids below it not seen yet (`unseen`).  On PostgreSQL ids come from a
    sequence when the row is inserted, not when it commits: a transaction holding a lower id may
    commit after one holding a higher id, so a gap below the watermark is looked at again until
    its row appears (or the caller gives up on it: a rolled-back transaction leaves a gap for good).

    Selected by id alone (the primary key) and folded here: with a state filter in SQL the
    planner may walk every pending step instead.  Returns (pairs, watermark, ids still unseen)."""
    unseen = set(unseen)
    where = escalation_steps.c.id > watermark
    if unseen:
        where = or_(where, among(conn, escalation_steps.c.id, sorted(unseen)))
    rows = conn.execute(select(escalation_steps.c.id, escalation_steps.c.order_team_id,
                               escalation_steps.c.due_at, escalation_steps.c.state).where(where)).all()
    earliest: dict[int, datetime] = {}
    seen = set()
    top = watermark
    for r in rows:
        seen.add(r.id)
        top = max(top, r.id)
        if r.state == "pending":
            due = utc(r.due_at)
            if r.order_team_id not in earliest or due < earliest[r.order_team_id]:
                earliest[r.order_team_id] = due
    unseen |= set(range(watermark + 1, top + 1))
    return list(earliest.items()), top, sorted(unseen - seen)


def _step_query():
    return (select(escalation_steps, order_teams.c.team_id, order_teams.c.order_id, orders.c.code,
                   orders.c.rule, orders.c.incident_ref, orders.c.created_at.label("order_created_at"),
                   orders.c.state.label("order_state"), teams.c.code.label("team_code"),
                   teams.c.name.label("team_name"), teams.c.active.label("team_active"))
            .join(order_teams, order_teams.c.id == escalation_steps.c.order_team_id)
            .join(orders, orders.c.id == order_teams.c.order_id)
            .join(teams, teams.c.id == order_teams.c.team_id))


def claim_due_tx(conn, order_team_ids, now: datetime, cfg: EscalationConfig, claimer: Claimer = Claimer()) -> Claim:
    cutoff = now + TOLERANCE
    # Every node wakes for every team's due step: the one whose claim locks the rows fires them,
    # the others skip them (PostgreSQL) or find them no longer pending.
    rows = conn.execute(skip_locked(
        _step_query().where(among(conn, escalation_steps.c.order_team_id, order_team_ids),
                            escalation_steps.c.state == "pending", escalation_steps.c.due_at <= cutoff,
                            claimer.free_or_mine(escalation_steps.c.owner_node, now))
        .order_by(escalation_steps.c.due_at, escalation_steps.c.id), conn, escalation_steps)).all()
    # The duty supervisor gets ONE alert per order and stage: take the sibling teams' due
    # supervisor steps along, even if their timers have not woken yet.
    groups = {(r.order_id, r.stage) for r in rows if r.action == "supervisor"}
    if groups:
        seen = {r.id for r in rows}
        for order_id, stage in groups:
            more = conn.execute(skip_locked(_step_query().where(
                order_teams.c.order_id == order_id, escalation_steps.c.stage == stage,
                escalation_steps.c.action == "supervisor", escalation_steps.c.state == "pending",
                escalation_steps.c.due_at <= cutoff, claimer.free_or_mine(escalation_steps.c.owner_node, now)),
                conn, escalation_steps)).all()
            rows += [r for r in more if r.id not in seen]
    claim = Claim([], [], {})
    states = ostore.load_team_states(conn, {r.order_team_id for r in rows})
    contacts = dq.team_commanders(conn, {r.team_id for r in rows})
    alerts: dict[tuple, SupervisorAlert] = {}
    audits = []
    cancels, due_rows = [], []
    for r in rows:
        st = states[r.order_team_id]
        if r.order_state != "open" or r.stage in ts.satisfied_stages(st) or not r.team_active:
            why = (f"order {r.order_state}" if r.order_state != "open" else
                   "team removed from the roster" if not r.team_active else f"team answered ({st.state})")
            cancels.append({"b_id": r.id, "b_why": why})
        else:
            due_rows.append(r)
    if cancels:
        # a statement for all of them (a claim takes up to MAX_CLAIM teams at once)
        claim.cancelled += max(0, conn.execute(
            update(escalation_steps).where(escalation_steps.c.id == bindparam("b_id"),
                                           escalation_steps.c.state == "pending")
            .values(state="cancelled", fired_at=now, reason=bindparam("b_why")), cancels).rowcount)
    claimed = _claim_steps(conn, [r.id for r in due_rows], now, claimer.node)
    unread = supervisor = object()      # the duty supervisor now: read once per claim, if an alert needs it
    finish = []
    for r in due_rows:
        if r.id not in claimed:
            continue        # another claim (the auditor's, another node's) got it first
        st = states[r.order_team_id]
        due = utc(r.due_at)
        late_by = (now - due).total_seconds()
        late = late_by > cfg.late_after_seconds
        reason = _reason(r, st, cfg, due)
        if late:
            reason += f"; fired {late_by:.0f} s late"
        f = FiredStep(r.id, r.order_team_id, r.order_id, r.code, r.team_id, r.team_code, r.team_name, r.stage,
                      r.step, r.action, due, late, reason, st.state,
                      st.finished_at is not None and not st.form_complete, contacts.get(r.team_id, []))
        if r.stage == SITUATION and r.step == 1:
            # The report was missed: its ladder goes on, and the next report is owed a period later.
            plan_next_situation_tx(conn, r.order_team_id, due + timedelta(minutes=cfg.major_report_minutes), cfg)
        if r.action in ("call_commander", "call_deputy"):
            f.call_to, note = _who_to_call(f.contacts, r.action)
            if note:
                f.reason += f"; {note}"
        finish.append({"b_id": r.id, "b_late": late, "b_reason": f.reason})
        if r.action == "supervisor":
            key = (r.order_id, r.stage)
            if key not in alerts:
                if supervisor is unread:
                    supervisor = dq.duty_supervisor(conn, now)
                alerts[key] = SupervisorAlert(r.order_id, r.code, r.incident_ref, r.stage, [], supervisor, [])
            alerts[key].teams.append((r.team_id, r.team_code, r.team_name, st.state))
            alerts[key].step_ids.append(r.id)
        claim.fired.append(f)
        audits.append(dict(at=now, actor="system", action="escalation.step", subject=f"order {r.code} team {r.team_code}",
                           detail={"step_id": r.id, "stage": r.stage, "step": r.step, "action": r.action,
                                   "late": late, "reason": f.reason}))
    if finish:
        conn.execute(update(escalation_steps).where(escalation_steps.c.id == bindparam("b_id"))
                     .values(late=bindparam("b_late"), reason=bindparam("b_reason")), finish)
    if audits:
        conn.execute(insert(audit_log), audits)
    for a in alerts.values():
        if a.supervisor is None:
            conn.execute(insert(audit_log).values(
                at=now, actor="system", action="escalation.no_supervisor", subject=f"order {a.order_code}",
                detail={"stage": a.stage, "teams": [t[1] for t in a.teams]}))
    claim.alerts = list(alerts.values())
    record_events(conn, [("order.escalated", _escalated_event(f, now)) for f in claim.fired]
                  + [("order.supervisor_alert", _alert_event(a)) for a in claim.alerts], now)
    claim.next_due = ostore.next_due_many_tx(conn, set(order_team_ids) | {r.order_team_id for r in rows})
    return claim


def _claim_steps(conn, step_ids: list[int], now: datetime, node: str | None = None) -> set[int]:
    """pending -> firing, for those still pending (a concurrent claim may have taken some): the
    ids this claim got.  One statement where the database returns what an UPDATE changed."""
    if not step_ids:
        return set()
    if conn.dialect.update_returning:
        got = set()
        for i in range(0, len(step_ids), 1000):
            got.update(conn.execute(update(escalation_steps)
                                    .where(among(conn, escalation_steps.c.id, step_ids[i:i + 1000]),
                                           escalation_steps.c.state == "pending")
                                    .values(state="firing", fired_at=now, owner_node=node)
                                    .returning(escalation_steps.c.id)).scalars())
        return got
    return {i for i in step_ids if conn.execute(update(escalation_steps).where(
        escalation_steps.c.id == i, escalation_steps.c.state == "pending")
        .values(state="firing", fired_at=now, owner_node=node)).rowcount == 1}


def _escalated_event(f: FiredStep, now: datetime) -> dict:
    return {"order_code": f.order_code, "order_id": f.order_id, "team": f.team_code, "stage": f.stage,
            "step": f.step, "action": f.action, "late": f.late, "reason": f.reason, "due_at": f.due_at.isoformat(),
            "fired_at": now.isoformat()}


def _alert_event(a: SupervisorAlert) -> dict:
    return {"order_code": a.order_code, "order_id": a.order_id, "incident_ref": a.incident_ref, "stage": a.stage,
            "teams": [{"code": c, "name": n, "state": s} for _, c, n, s in a.teams],
            "supervisor": a.supervisor.name if a.supervisor else None}


def _reason(r, st: ts.TeamOrderState, cfg: EscalationConfig, due: datetime) -> str:
    sent = utc(r.order_created_at)
    if r.stage == RECEIPT:
        mins = (due - sent).total_seconds() / 60
        return (f"no receipt from team {r.team_code} {mins:g} min after the order was sent at "
                f"{local_hhmm(sent, cfg)}; team {st.state}")
    deadline = stage_deadlines(r.rule, sent, cfg).get(r.stage)
    past = (due - deadline).total_seconds() / 60 if deadline else 0
    what = STAGE_EN.get(r.stage, r.stage)
    if r.stage == "report" and st.finished_at and not st.form_complete:
        what = "complete feedback form (result, follow-up, responsible person and unit, casualties)"
    if r.stage == SITUATION:
        return (f"no situation report from team {r.team_code} on major order {r.code}: due "
                f"{local_hhmm(_situation_due(r.step, due, cfg), cfg)}, every {cfg.major_report_minutes:g} min while on scene; "
                f"team {st.state}")
    return (f"no '{what}' from team {r.team_code}: deadline {local_hhmm(deadline, cfg) if deadline else '?'} "
            f"passed {past:g} min ago; team {st.state}")


def _situation_due(step: int, due: datetime, cfg: EscalationConfig) -> datetime:
    """When the report a situation step chases was due: the rung's offset back from the step."""
    ladder = cfg.situation_ladder
    return due - timedelta(minutes=ladder[step - 1].minutes) if 0 < step <= len(ladder) else due


def plan_next_situation_tx(conn, order_team_id: int, due: datetime, cfg: EscalationConfig, *,
                           replace_pending: str | None = None, now: datetime | None = None) -> None:
    """The team's next situation report is due at `due`.  With `replace_pending` (the reason: a
    report came in) the pending cycle is cancelled first; without, the missed cycle's ladder goes on."""
    if replace_pending:
        conn.execute(update(escalation_steps)
                     .where(escalation_steps.c.order_team_id == order_team_id,
                            escalation_steps.c.stage == SITUATION, escalation_steps.c.state == "pending")
                     .values(state="cancelled", fired_at=now, reason=replace_pending))
    from gateway.cluster.wakeups import notify_tx
    notify_tx(conn, "step")
    conn.execute(insert(escalation_steps), [
        dict(order_team_id=order_team_id, stage=p.stage, step=p.step, action=p.action, due_at=p.due_at,
             state="pending", late=False) for p in plan_situation_steps(due, cfg)])


def _who_to_call(contacts, action):
    want, other = ("commander", "deputy") if action == "call_commander" else ("deputy", "commander")
    m = dq.first_phone(contacts, want)
    if m:
        return m, None
    m = dq.first_phone(contacts, other)
    if m:
        return m, f"no {want} phone on the roster: called the {other}"
    return None, f"no {want} or {other} phone on the roster: nobody to call"


def finish_steps_tx(conn, step_ids, now: datetime) -> None:
    if step_ids:
        conn.execute(update(escalation_steps).where(among(conn, escalation_steps.c.id, step_ids),
                                                    escalation_steps.c.state == "firing")
                     .values(state="fired"))


def audit_tx(conn, now: datetime, cfg: EscalationConfig, busy=frozenset(), claimer: Claimer = Claimer()):
    """The auditor: every step overdue beyond the grace is a step the engine missed; a step stuck
    in `firing` (its SMS never handed on) is put back.  `busy`: teams the engine is claiming right
    now (late under load, not missed).  Returns [(order_team_id, step count)]."""
    grace = timedelta(seconds=max(cfg.late_after_seconds, 2 * cfg.refresh_seconds, 1.0))
    stuck = conn.execute(update(escalation_steps)
                         .where(escalation_steps.c.state == "firing",
                                escalation_steps.c.fired_at < now - timedelta(seconds=cfg.stuck_after_seconds),
                                claimer.mine_or_dead(escalation_steps.c.owner_node, now))
                         .values(state="pending", fired_at=None, owner_node=None)).rowcount
    rows = conn.execute(select(escalation_steps.c.order_team_id, func.count())
                        .join(order_teams, order_teams.c.id == escalation_steps.c.order_team_id)
                        .join(orders, orders.c.id == order_teams.c.order_id)
                        .where(escalation_steps.c.state == "pending", escalation_steps.c.due_at < now - grace,
                               orders.c.state == "open")
                        .group_by(escalation_steps.c.order_team_id)).all()
    rows = [r for r in rows if r[0] not in busy]
    if rows or stuck:
        conn.execute(insert(audit_log).values(
            at=now, actor="system", action="escalation.missed", subject="auditor",
            detail={"order_teams": [r[0] for r in rows][:200], "steps": sum(r[1] for r in rows),
                    "stuck_refired": stuck}))
    return [(r[0], r[1]) for r in rows]


def record_call_outcome_tx(conn, step_id: int, outcome: str, now: datetime) -> None:
    """An escalation call ended.  If the calls of this stage to commander AND deputy both went
    unanswered and the team has said nothing, the team is `unreachable` (the dispatcher sees it;
    the ladder goes on to the duty supervisor regardless)."""
    conn.execute(update(escalation_steps).where(escalation_steps.c.id == step_id).values(outcome=outcome))
    step = conn.execute(select(escalation_steps.c.order_team_id, escalation_steps.c.stage)
                        .where(escalation_steps.c.id == step_id)).first()
    if step is None or outcome == "answered":
        return
    calls = conn.execute(select(escalation_steps.c.action, escalation_steps.c.outcome)
                         .where(escalation_steps.c.order_team_id == step.order_team_id,
                                escalation_steps.c.stage == step.stage,
                                escalation_steps.c.action.in_(("call_commander", "call_deputy")))).all()
    if len(calls) >= 2 and all(c.outcome in ("no_answer", "busy", "failed") for c in calls):
        _row, old = ostore.load_team_state(conn, step.order_team_id)
        new = ts.on_unreachable(old, "calls unanswered: " + ", ".join(
            f"{c.action.removeprefix('call_')} {c.outcome}" for c in calls))
        ostore.save_team_state(conn, step.order_team_id, old, new, now)
