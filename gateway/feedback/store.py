"""The feedback unit of work: one answer, judged and recorded in one transaction."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, update

from gateway.escalation.config import EscalationConfig
from gateway.escalation.deadlines import local_hhmm
from gateway.eventlog import record_event
from gateway.orders import directory_queries as dq
from gateway.orders import messages
from gateway.orders import store as ostore
from gateway.orders import team_state as ts
from gateway.orders.grammar import FINISHED, Refusal, Reply
from gateway.storage.schema import audit_log, escalation_steps, feedback, inbound_raw

MAX_CODES = 5     # codes listed in "which order?" SMS: the newest open ones

RECORDED, REFUSED, NEEDS_CODE, GARBAGE, NOT_APPLICABLE, DUPLICATE = \
    "recorded", "refused", "needs_code", "garbage", "not_applicable", "duplicate"


@dataclass(frozen=True)
class Answer:
    channel: str                 # sms / keypad / api
    phone: str
    parsed: Reply | Refusal
    at: datetime
    raw_id: int | None = None
    text: str = ""               # as received, for the audit


@dataclass
class Verdict:
    outcome: str
    message: str = ""            # what to tell the sender
    reply_to: str | None = None  # None: do not answer (a number not on the roster)
    order_code: str | None = None
    order_id: int | None = None
    order_team_id: int | None = None
    team_code: str | None = None
    member_id: int | None = None
    status: str | None = None
    advanced: bool = False
    next_due: datetime | None = None
    reason: str = ""
    supervisor_phone: str | None = None     # told of an answer that came after their alert
    event: dict = field(default_factory=dict)
    hhmm: str = ""                          # local time of the answer, as confirmed


def _mark_raw(conn, raw_id, state, note):
    if raw_id is not None:
        conn.execute(update(inbound_raw).where(inbound_raw.c.id == raw_id).values(state=state, note=note))


def _audit(conn, at, a: Answer, action, subject, detail):
    conn.execute(insert(audit_log).values(at=at, actor=f"{a.channel}:{a.phone}", action=action, subject=subject,
                                          detail={"raw_id": a.raw_id, "text": a.text[:500], **detail}))


def _refuse(conn, a: Answer, outcome, reason, message="", reply_to=None, **kw) -> Verdict:
    _mark_raw(conn, a.raw_id, "garbage" if outcome == GARBAGE else "refused", reason)
    _audit(conn, a.at, a, f"feedback.{outcome}", kw.get("order_code") or "reply", {"reason": reason})
    return Verdict(outcome, message, reply_to, reason=reason, **kw)


def record_answer_tx(conn, a: Answer, cfg: EscalationConfig) -> Verdict:
    if a.raw_id is not None:
        raw_state = conn.execute(select(inbound_raw.c.state).where(inbound_raw.c.id == a.raw_id)).scalar()
        if raw_state not in (None, "new"):
            # Handed to us twice (a restart in between): judged already, do not record or answer again.
            return Verdict(DUPLICATE, reason=f"raw {a.raw_id} already {raw_state}")
    member = dq.member_by_phone(conn, a.phone)
    if member is None:
        return _refuse(conn, a, REFUSED, "sender not on the roster")
    code = a.parsed.code if isinstance(a.parsed, Reply) else None
    team_code, team_name = member.team_code, member.team_name
    if isinstance(a.parsed, Refusal):
        return _refuse(conn, a, GARBAGE, f"unreadable reply ({a.parsed.reason})", messages.help_sms(), a.phone,
                       team_code=team_code, member_id=member.id)
    if code is not None:
        found = ostore.open_order_teams_for_team(conn, member.team_id, code)
        if not found:
            open_codes = [r.code for r in ostore.open_order_teams_for_team(conn, member.team_id, limit=MAX_CODES)]
            return _refuse(conn, a, REFUSED, f"order {code} is not an open order of team {team_code}",
                           messages.not_your_order_sms(code, open_codes), a.phone, order_code=code,
                           team_code=team_code, member_id=member.id)
        row = found[0]
    else:
        # No code typed: fine when the team has exactly one open order.
        open_rows = ostore.open_order_teams_for_team(conn, member.team_id, limit=MAX_CODES)
        open_codes = [r.code for r in open_rows]
        if not open_rows:
            return _refuse(conn, a, REFUSED, f"team {team_code} has no open order",
                           messages.not_your_order_sms(None, []), a.phone, team_code=team_code, member_id=member.id)
        if len(open_rows) > 1:
            return _refuse(conn, a, NEEDS_CODE, f"ambiguous: team {team_code} has several open orders",
                           messages.needs_code_sms(open_codes), a.phone, team_code=team_code, member_id=member.id)
        row = open_rows[0]
    status, report = a.parsed.status, a.parsed.report
    row, old = ostore.load_team_state(conn, row.id)      # again, locked this time
    out = ts.on_answer(old, status, a.at, member.id, report)
    if not out.accepted:
        return _refuse(conn, a, NOT_APPLICABLE, out.note, messages.not_applicable_sms(row.code), a.phone,
                       order_code=row.code, team_code=team_code, member_id=member.id)
    conn.execute(insert(feedback).values(order_team_id=row.id, member_id=member.id, phone=a.phone, channel=a.channel,
                                         status=status, report=report or None, raw_id=a.raw_id, recorded_at=a.at))
    ostore.save_team_state(conn, row.id, old, out.state, a.at)
    next_due = ostore.cancel_satisfied_steps_tx(conn, row.id, out.state,
                                                f"team answered {status} ({a.channel} {a.phone})", a.at)
    hhmm = local_hhmm(a.at, cfg)
    note = f"order {row.code} {status}" + (f"; {out.note}" if out.note else "")
    _mark_raw(conn, a.raw_id, "parsed", note)
    _audit(conn, a.at, a, "feedback.recorded", f"order {row.code} team {team_code}",
           {"status": status, "member_id": member.id, "state": out.state.state, "advanced": out.advanced})
    # An answer after the duty supervisor was alerted about this team: tell the supervisor too.
    sup_phone = None
    newly = ts.satisfied_stages(out.state) - ts.satisfied_stages(old)
    alerted = conn.execute(select(escalation_steps.c.stage).where(
        escalation_steps.c.order_team_id == row.id, escalation_steps.c.action == "supervisor",
        escalation_steps.c.state.in_(("firing", "fired")))).scalars().all() if newly else []
    if set(alerted) & newly:        # once per alerted stage: not again for every later answer
        sup = dq.duty_supervisor(conn, a.at)
        sup_phone = sup.phone if sup else None
    order_id = row.order_id
    incident = row.incident_ref
    event = {"order_code": row.code, "order_id": order_id, "incident_ref": incident,
             "team": team_code, "team_name": team_name, "status": status, "state": out.state.state,
             "channel": a.channel, "member": member.name, "role": member.role, "phone": a.phone,
             "report": report, "at": a.at.isoformat(), "after_escalation": bool(alerted)}
    record_event(conn, "order.feedback", event, a.at)
    return Verdict(RECORDED,
                   messages.confirmation_sms(row.code, status, hhmm,
                                             ask_report=status == FINISHED and not out.state.report),
                   a.phone, row.code, order_id, row.id, team_code, member.id, status, out.advanced, next_due,
                   note, sup_phone,
                   event=event,
                   hhmm=hhmm)


def record_batch_tx(conn, answers: list[Answer], cfg: EscalationConfig) -> list[Verdict]:
    """Several answers, one transaction (group commit), in arrival order."""
    return [record_answer_tx(conn, a, cfg) for a in answers]


def open_codes_for_phone_tx(conn, phone: str) -> list[str]:
    m = dq.member_by_phone(conn, phone)
    if m is None:
        return []
    return [r.code for r in ostore.open_order_teams_for_team(conn, m.team_id, limit=20)]
