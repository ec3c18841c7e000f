"""The order summary a dispatcher reads at a glance: per team, where it stands and what was done."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from gateway.escalation.config import EscalationConfig
from zoneinfo import ZoneInfo

from gateway.escalation.deadlines import STAGE_WORD, stage_deadlines
from gateway.orders.grammar import STATUS_WORD
from gateway.orders.team_state import STATE_WORD
from gateway.orders.times import utc
from gateway.feedback.form import FIELD_WORD, FIELDS, missing
from gateway.mode import DRILL_PREFIX
from gateway.storage.schema import (deliveries, escalation_steps, feedback, feedback_forms, leader_notifications,
                                    leaders, members, order_notes, order_teams, orders, situation_reports, teams)

OUTCOME_WORD = {"answered": "接通", "no_answer": "未接", "busy": "占线", "failed": "失败"}
QUEUED = "queued"                # shown, not a team state: the order SMS waits for a modem
ACTION_WORD = {"sms_again": "催办短信", "call_commander": "电话指挥", "call_deputy": "电话副指挥",
               "supervisor": "报值班长"}


@dataclass
class StepTaken:
    stage: str
    action: str
    at: datetime
    late: bool
    reason: str
    outcome: str | None = None       # of a call


@dataclass
class TeamLine:
    team_code: str
    team_name: str
    state: str
    answered_by: str | None          # "指挥1 (commander)"
    channel: str | None              # sms / keypad, of the last answer
    took: dict                       # status -> seconds after the order was sent
    report: str | None
    reason: str | None
    steps: list = field(default_factory=list)
    next_step: tuple | None = None   # (stage, action, due)
    sms: dict = field(default_factory=dict)   # the team's order SMS by delivery state: queued / sent / failed
    form: dict | None = None         # the formal feedback form: fields, complete, missing

    @property
    def shown_state(self) -> str:
        """What a dispatcher should read: "queued" while the team's order SMS still waits for a
        modem (the team state says "sent" from the moment the order is committed)."""
        if self.state == "sent" and self.sms and set(self.sms) <= {"queued", "handing"}:
            return QUEUED
        return self.state


@dataclass
class TimelineEntry:
    """One line of a major order's timeline: a situation report, a leader's SMS or note."""
    at: datetime
    kind: str                        # situation / leader_sms / note
    who: str                         # the team (and member), or the leader
    text: str
    channel: str | None = None       # sms / keypad
    audio_path: str | None = None    # a spoken report's recording
    audio_seconds: float | None = None


@dataclass
class OrderSummary:
    code: str
    order_id: int
    incident_ref: str
    kind: str
    onscene_commander: str
    rule: str
    state: str
    text: str
    sent_at: datetime
    deadlines: dict
    teams: list
    major: bool = False
    timeline: list = field(default_factory=list)
    drill: bool = False              # an assembly drill: counted apart from real incidents


def load_summary_tx(conn, code: str, cfg: EscalationConfig) -> OrderSummary | None:
    o = conn.execute(select(orders).where(orders.c.code == code)
                     .order_by((orders.c.state == "open").desc(), orders.c.created_at.desc())).first()
    if o is None:
        return None
    sent = utc(o.created_at)
    rows = conn.execute(select(order_teams, teams.c.code.label("team_code"), teams.c.name.label("team_name"),
                               members.c.name.label("member_name"), members.c.role.label("member_role"))
                        .join(teams, teams.c.id == order_teams.c.team_id)
                        .outerjoin(members, members.c.id == order_teams.c.answered_by)
                        .where(order_teams.c.order_id == o.id).order_by(teams.c.code)).all()
    ot_ids = [r.id for r in rows]
    steps = conn.execute(select(escalation_steps).where(escalation_steps.c.order_team_id.in_(ot_ids))
                         .order_by(escalation_steps.c.due_at, escalation_steps.c.id)).all()
    sms_states: dict = {}
    for team_id, state, n in conn.execute(
            select(deliveries.c.team_id, deliveries.c.state, func.count())
            .where(deliveries.c.order_id == o.id, deliveries.c.channel == "sms")
            .group_by(deliveries.c.team_id, deliveries.c.state)):
        sms_states.setdefault(team_id, {})[state] = n
    last_channel = {}
    for f in conn.execute(select(feedback.c.order_team_id, feedback.c.channel)
                          .where(feedback.c.order_team_id.in_(ot_ids)).order_by(feedback.c.id)):
        last_channel[f.order_team_id] = f.channel
    lines = []
    for r in rows:
        took = {}
        for st in ("received", "assembled", "arrived", "finished"):
            t = utc(getattr(r, f"{st}_at"))
            if t:
                took[st] = (t - sent).total_seconds()
        line = TeamLine(r.team_code, r.team_name, r.state,
                        f"{r.member_name} ({r.member_role})" if r.member_name else None,
                        last_channel.get(r.id), took, r.report, r.reason, sms=sms_states.get(r.team_id, {}))
        for s in steps:
            if s.order_team_id != r.id:
                continue
            if s.state in ("fired", "firing"):
                line.steps.append(StepTaken(s.stage, s.action, utc(s.fired_at), s.late, s.reason or "", s.outcome))
            elif s.state == "pending" and line.next_step is None:
                line.next_step = (s.stage, s.action, utc(s.due_at))
        lines.append(line)
    forms = {f.order_team_id: f for f in conn.execute(select(feedback_forms)
                                                       .where(feedback_forms.c.order_team_id.in_(ot_ids)))}
    for r, line in zip(rows, lines):
        if r.finished_at is not None or r.id in forms:
            line.form = form_view(forms.get(r.id))
    return OrderSummary(o.code, o.id, o.incident_ref, o.kind, o.onscene_commander or "", o.rule, o.state, o.text,
                        sent, stage_deadlines(o.rule, sent, cfg), lines, bool(o.major), _timeline(conn, o.id),
                        drill=bool(o.drill))


def form_view(row) -> dict:
    values = {f: (getattr(row, f) if row is not None else None) for f in FIELDS}
    return {**values, "complete": bool(row.complete) if row is not None else False, "missing": missing(values),
            "updated_by": row.updated_by if row is not None else None,
            "updated_at": utc(row.updated_at) if row is not None else None,
            "completed_at": utc(row.completed_at) if row is not None else None}


def _timeline(conn, order_id: int) -> list[TimelineEntry]:
    out = [TimelineEntry(utc(r.recorded_at), "situation", f"{r.team_name} {r.member_name or r.phone or ''}".strip(),
                         r.text or "", r.channel, r.audio_path, r.audio_seconds)
           for r in conn.execute(select(situation_reports, teams.c.name.label("team_name"),
                                        members.c.name.label("member_name"))
                                 .join(order_teams, order_teams.c.id == situation_reports.c.order_team_id)
                                 .join(teams, teams.c.id == order_teams.c.team_id)
                                 .outerjoin(members, members.c.id == situation_reports.c.member_id)
                                 .where(situation_reports.c.order_id == order_id))]
    out += [TimelineEntry(utc(r.created_at), "leader_sms", f"{r.name} ({r.kind}, {r.state})", r.text, "sms")
            for r in conn.execute(select(leader_notifications, leaders.c.name)
                                  .join(leaders, leaders.c.id == leader_notifications.c.leader_id)
                                  .where(leader_notifications.c.order_id == order_id))]
    out += [TimelineEntry(utc(r.at), "note", r.author, r.text, "sms")
            for r in conn.execute(select(order_notes).where(order_notes.c.order_id == order_id))]
    return sorted(out, key=lambda e: e.at)


def _dur(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def render(s: OrderSummary, cfg: EscalationConfig, now: datetime | None = None) -> str:
    zone = ZoneInfo(cfg.timezone)
    day0 = s.sent_at.astimezone(zone).date()

    def hh(t: datetime) -> str:
        """HH:MM on the order's day, MM-DD HH:MM after it (the 24-hour report)."""
        lt = t.astimezone(zone)
        return lt.strftime("%H:%M") if lt.date() == day0 else lt.strftime("%m-%d %H:%M")
    out = [f"{DRILL_PREFIX if s.drill else ''}{'【重大】' if s.major else ''}指令 {s.code}  {s.incident_ref}  [{s.kind} / {s.rule}]  {s.state}  "
           f"下达 {hh(s.sent_at)}",
           f"  现场指挥：{s.onscene_commander}",
           f"  {s.text}",
           "  时限：" + "  ".join(f"{STAGE_WORD[k]} {hh(v)}" for k, v in s.deadlines.items() if k != "receipt")]
    counts: dict[str, int] = {}
    for t in s.teams:
        counts[t.shown_state] = counts.get(t.shown_state, 0) + 1
    out.append("  队伍：" + "  ".join(f"{STATE_WORD.get(k, k)} {v}" for k, v in sorted(counts.items())))
    out.append("")
    for t in s.teams:
        took = "  ".join(f"{STATUS_WORD.get(k, k)} +{_dur(v)}" for k, v in t.took.items()) or "无回复"
        who = f"{t.answered_by} via {t.channel}" if t.answered_by else "—"
        # "!!": being chased now (the last step's stage is still open), or declined.
        chased = bool(t.steps and t.next_step and t.next_step[0] == t.steps[-1].stage)
        flag = "!!" if chased or t.state == "declined" else "  "
        out.append(f"{flag}{t.team_code:<8} {t.team_name:<12} {STATE_WORD.get(t.shown_state, t.shown_state):<6} "
                   f"{took:<40} {who}")
        if t.reason:
            out.append(f"            原因：{t.reason}")
        if t.report:
            out.append(f"            报告：{t.report}")
        if t.steps:
            out.append("            催办：" + "，".join(
                f"{hh(st.at)} {STAGE_WORD.get(st.stage, st.stage)}{ACTION_WORD.get(st.action, st.action)}"
                + (f"({OUTCOME_WORD.get(st.outcome, st.outcome)})" if st.outcome else "")
                + ("(迟)" if st.late else "") for st in t.steps))
        if t.next_step and t.state not in ("finished", "declined"):
            stage, action, due = t.next_step
            out.append(f"            下一步：{hh(due)} {STAGE_WORD.get(stage, stage)}{ACTION_WORD.get(action, action)}")
        if t.form is not None:
            state = "齐全" if t.form["complete"] else "缺 " + "、".join(FIELD_WORD[f] for f in t.form["missing"])
            out.append(f"            反馈单：{state}")
    if s.timeline:
        out += ["", "  时间线："]
        out += [f"  {hh(e.at)} {TIMELINE_WORD.get(e.kind, e.kind)} {e.who}：{timeline_text(e)}" for e in s.timeline]
    return "\n".join(out)


TIMELINE_WORD = {"situation": "现场动态", "leader_sms": "报领导", "note": "领导批示"}


def timeline_text(e: TimelineEntry) -> str:
    if e.audio_path:
        return f"[录音 {e.audio_seconds or 0:.0f} 秒] {e.audio_path}"
    return e.text
