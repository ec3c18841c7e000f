"""Per team and order, what happened when: the facts both the drill report and the assessment are
built from.  Times are minutes after the order was sent; each deadline of the center's rules
(assembly / arrival by day or night, the 24-hour report) is judged on time or late here, once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from gateway.escalation.config import EscalationConfig
from gateway.escalation.deadlines import ARRIVAL, ASSEMBLY, REPORT, is_night, stage_deadlines
from gateway.orders.roster_check import ROSTER_CHECK
from gateway.orders.times import utc
from gateway.storage.schema import escalation_steps, feedback, members, order_teams, orders, teams

# The answer that completes each measured step; the report is the finishing answer.
STEPS = ("received", "assembled", "arrived", "finished")
STEP_WORD = {"received": "接收", "assembled": "集结", "arrived": "到达", "finished": "报告"}
DEADLINE_OF = {"assembled": ASSEMBLY, "arrived": ARRIVAL, "finished": REPORT}
# A later step also proves the earlier ones (who arrived has assembled and received).
_PROVES = {"received": STEPS, "assembled": ("assembled", "arrived", "finished"),
           "arrived": ("arrived", "finished"), "finished": ("finished",)}


def is_drill_order(row) -> bool:
    """Drill or real: the one place that decides (orders.drill, set for every order of a drill-mode
    gateway and for a drill order on live hardware: gateway/orders/drill.py)."""
    return bool(row.drill)


@dataclass
class Answer:
    at: datetime
    status: str
    channel: str
    who: str          # "姓名 (commander)"


@dataclass
class StepRecord:
    stage: str
    action: str
    state: str
    due_at: datetime
    fired_at: datetime | None
    outcome: str | None


@dataclass
class TeamTiming:
    order_code: str
    incident_ref: str
    drill: bool
    rule: str
    night: bool
    sent_at: datetime
    team_code: str
    team_name: str
    team_kind: str
    state: str
    minutes: dict                         # step -> minutes after the order (None: never)
    deadlines: dict                       # step -> the deadline it is measured against (aware UTC)
    on_time: dict                         # step with a deadline -> True / False (None: not yet due)
    answers: list = field(default_factory=list)
    steps: list = field(default_factory=list)

    @property
    def silent(self) -> bool:
        """The team never answered this order (neither SMS nor keypad)."""
        return not self.answers

    @property
    def escalations(self) -> int:
        return sum(1 for s in self.steps if s.state in ("fired", "firing"))


def _first(times: dict, step: str):
    found = [times[s] for s in _PROVES[step] if times.get(s) is not None]
    return min(found) if found else None


def timings_tx(conn, cfg: EscalationConfig, start: datetime | None = None, end: datetime | None = None,
               codes: list[str] | None = None, now: datetime | None = None) -> list[TeamTiming]:
    """Every team of every order sent in [start, end) (or of the orders named), oldest first."""
    q = select(orders).where(orders.c.kind != ROSTER_CHECK)      # a roster check has no deadline to score
    if start is not None:
        q = q.where(orders.c.created_at >= start)
    if end is not None:
        q = q.where(orders.c.created_at < end)
    if codes is not None:
        q = q.where(orders.c.code.in_(codes))
    order_rows = {o.id: o for o in conn.execute(q.order_by(orders.c.created_at, orders.c.id)).all()}
    if not order_rows:
        return []
    rows = conn.execute(select(order_teams, teams.c.code.label("team_code"), teams.c.name.label("team_name"),
                               teams.c.kind.label("team_kind"))
                        .join(teams, teams.c.id == order_teams.c.team_id)
                        .where(order_teams.c.order_id.in_(list(order_rows)))
                        .order_by(order_teams.c.order_id, teams.c.code)).all()
    ids = [r.id for r in rows]
    answers: dict[int, list[Answer]] = {}
    for f in conn.execute(select(feedback.c.order_team_id, feedback.c.recorded_at, feedback.c.status,
                                 feedback.c.channel, members.c.name, members.c.role)
                          .outerjoin(members, members.c.id == feedback.c.member_id)
                          .where(feedback.c.order_team_id.in_(ids)).order_by(feedback.c.id)):
        answers.setdefault(f.order_team_id, []).append(
            Answer(utc(f.recorded_at), f.status, f.channel, f"{f.name} ({f.role})" if f.name else "?"))
    steps: dict[int, list[StepRecord]] = {}
    for s in conn.execute(select(escalation_steps).where(escalation_steps.c.order_team_id.in_(ids))
                          .order_by(escalation_steps.c.due_at, escalation_steps.c.id)):
        steps.setdefault(s.order_team_id, []).append(
            StepRecord(s.stage, s.action, s.state, utc(s.due_at), utc(s.fired_at), s.outcome))
    out = []
    for r in rows:
        o = order_rows[r.order_id]
        sent = utc(o.created_at)
        stamps = {s: utc(getattr(r, f"{s}_at")) for s in STEPS}
        stage_deadline = stage_deadlines(o.rule, sent, cfg)
        minutes, deadlines, on_time = {}, {}, {}
        for step in STEPS:
            # Assembly is measured only where the rule has it (teams leaving the city).
            at = _first(stamps, step) if step != "assembled" or ASSEMBLY in stage_deadline else None
            minutes[step] = round((at - sent).total_seconds() / 60, 2) if at else None
            stage = DEADLINE_OF.get(step)
            if stage in stage_deadline:
                deadline = stage_deadline[stage]
                deadlines[step] = deadline
                if at is not None:
                    on_time[step] = at <= deadline
                elif now is not None and now > deadline:
                    on_time[step] = False
                else:
                    on_time[step] = None
        out.append(TeamTiming(o.code, o.incident_ref, is_drill_order(o), o.rule, is_night(sent, cfg), sent,
                              r.team_code, r.team_name, r.team_kind, r.state, minutes, deadlines, on_time,
                              answers.get(r.id, []), steps.get(r.id, [])))
    return out
