"""The feedback unit of work: one answer, judged and recorded in one transaction."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from gateway.escalation.config import EscalationConfig
from gateway.escalation.deadlines import local_hhmm
from gateway.escalation.store import plan_next_situation_tx
from gateway.eventlog import record_event
from gateway.feedback import form as ff
from gateway.feedback import form_store
from gateway.leaders import store as leaders_store
from gateway.orders import directory_queries as dq
from gateway.orders import messages
from gateway.orders import store as ostore
from gateway.orders import team_state as ts
from gateway.orders.grammar import ARRIVED, FINISHED, SITUATION, Refusal, Reply
from gateway.storage.schema import audit_log, escalation_steps, feedback, inbound_raw, situation_reports

MAX_CODES = 5     # codes listed in "which order?" SMS: the newest open ones

RECORDED, REFUSED, NEEDS_CODE, GARBAGE, NOT_APPLICABLE, DUPLICATE, NOTE = \
    "recorded", "refused", "needs_code", "garbage", "not_applicable", "duplicate", "note"
FORM = "form"       # the status of an answer that filled fields of the feedback form


@dataclass(frozen=True)
class Answer:
    channel: str                 # sms / keypad / api
    phone: str
    parsed: Reply | Refusal
    at: datetime
    raw_id: int | None = None
    text: str = ""               # as received, for the audit
    audio_path: str | None = None   # a spoken situation report (keypad 5)
    audio_seconds: float | None = None


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
    staged: list = field(default_factory=list)   # reply SMS committed with the feedback (outbox records)


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
        if a.channel == "sms":
            v = _leader_note(conn, a)
            if v is not None:
                return v
        return _refuse(conn, a, REFUSED, "sender not on the roster")
    code = a.parsed.code if isinstance(a.parsed, Reply) else None
    team_code, team_name = member.team_code, member.team_name
    if isinstance(a.parsed, Refusal):
        v = _form_answer(conn, a, member, cfg) if a.channel == "sms" else None
        if v is not None:
            return v
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
    major = bool(row.major)
    if status == SITUATION:
        return record_situation_tx(conn, a, member, row, report, cfg, a.audio_path, a.audio_seconds)
    row, old = ostore.load_team_state(conn, row.id)      # again, locked this time
    out = ts.on_answer(old, status, a.at, member.id, report)
    if not out.accepted:
        return _refuse(conn, a, NOT_APPLICABLE, out.note, messages.not_applicable_sms(row.code), a.phone,
                       order_code=row.code, team_code=team_code, member_id=member.id)
    conn.execute(insert(feedback).values(order_team_id=row.id, member_id=member.id, phone=a.phone, channel=a.channel,
                                         status=status, report=report or None, raw_id=a.raw_id, recorded_at=a.at))
    state, ask = out.state, ""
    if status == FINISHED:
        fs = form_store.apply_tx(conn, row.id, _form_from_report(report), f"{a.channel}:{a.phone}", a.at)
        state = replace(state, form_complete=fs.complete)
        ask = ff.ask_text(row.code, fs.asked) if fs.asked else ""
    ostore.save_team_state(conn, row.id, old, state, a.at)
    next_due = ostore.cancel_satisfied_steps_tx(conn, row.id, state,
                                                f"team answered {status} ({a.channel} {a.phone})", a.at)
    if major and status == ARRIVED and old.arrived_at is None and state.finished_at is None:
        # On scene: the first situation report is owed a period from now.
        every = cfg.major_report_minutes
        plan_next_situation_tx(conn, row.id, a.at + timedelta(minutes=every), cfg)
        next_due = ostore.next_due_tx(conn, row.id)
        ask = f"重大事件：请每{every:g}分钟续报现场动态（{row.code} 续报 …）"
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
                   messages.confirmation_sms(row.code, status, hhmm, ask),
                   a.phone, row.code, order_id, row.id, team_code, member.id, status, out.advanced, next_due,
                   note, sup_phone,
                   event=event,
                   hhmm=hhmm)


def record_batch_tx(conn, answers: list[Answer], cfg: EscalationConfig, stage_sms=None) -> list[Verdict]:
    """Several answers, one transaction (group commit), in arrival order.  stage_sms: the outbox's
    stage_tx; each answer's reply (confirmation, help, the supervisor's notice) is written in the
    same transaction as the feedback (transactional outbox), on `Verdict.staged`."""
    verdicts = [record_answer_tx(conn, a, cfg) for a in answers]
    if stage_sms is not None:
        for a, v in zip(answers, verdicts):
            v.staged = _stage_replies(conn, a, v, stage_sms)
    return verdicts


def record_one_tx(conn, a: Answer, cfg: EscalationConfig, stage_sms=None) -> Verdict:
    return record_batch_tx(conn, [a], cfg, stage_sms)[0]


def _stage_replies(conn, a: Answer, v: Verdict, stage_sms) -> list:
    out = []
    if v.reply_to and v.message:
        purpose = "confirmation" if v.outcome in (RECORDED, NOTE) else "reply_help"
        out.append(stage_sms(conn, a.at, v.reply_to, v.message, purpose=purpose, order_id=v.order_id))
    if v.supervisor_phone:
        out.append(stage_sms(conn, a.at, v.supervisor_phone, messages.supervisor_late_answer_sms(
            v.order_code, v.event.get("team_name", v.team_code), v.status, v.hhmm),
            purpose="supervisor", order_id=v.order_id))
    # (the order.feedback event was recorded by record_answer_tx, in this same transaction)
    return out


def open_codes_for_phone_tx(conn, phone: str) -> list[str]:
    m = dq.member_by_phone(conn, phone)
    if m is None:
        return []
    return [r.code for r in ostore.open_order_teams_for_team(conn, m.team_id, limit=20)]


# --- situation reports, the feedback form, leaders' notes --------------------------------------

def record_situation_tx(conn, a: Answer, member, row, text: str, cfg: EscalationConfig,
                        audio_path: str | None = None, audio_seconds: float | None = None) -> Verdict:
    """A situation report (现场动态): kept on the order's timeline; never a team's state.  On a major
    order with the team on scene, the next report is owed a period from now."""
    _row, st = ostore.load_team_state(conn, row.id)
    conn.execute(insert(situation_reports).values(
        order_id=row.order_id, order_team_id=row.id, member_id=member.id, phone=a.phone, channel=a.channel,
        text=text or None, audio_path=audio_path, audio_seconds=audio_seconds, raw_id=a.raw_id,
        recorded_at=a.at))
    hhmm = local_hhmm(a.at, cfg)
    ask, next_due = "", None
    if row.major and (st.arrived_at or st.assembled_at) and st.finished_at is None:
        due = a.at + timedelta(minutes=cfg.major_report_minutes)
        plan_next_situation_tx(conn, row.id, due, cfg, now=a.at,
                               replace_pending=f"situation report received ({a.channel} {a.phone})")
        ask = f"请于{local_hhmm(due, cfg)}前续报"
    next_due = ostore.next_due_tx(conn, row.id)
    _mark_raw(conn, a.raw_id, "parsed", f"order {row.code} situation report")
    _audit(conn, a.at, a, "feedback.situation", f"order {row.code} team {member.team_code}",
           {"member_id": member.id, "audio": audio_path, "seconds": audio_seconds})
    what = text or (f"[录音{audio_seconds:.0f}秒]" if audio_seconds is not None else "")
    event = {"order_code": row.code, "order_id": row.order_id, "team": member.team_code,
             "team_name": member.team_name, "member": member.name, "phone": a.phone,
             "channel": a.channel, "text": what, "audio_seconds": audio_seconds, "at": a.at.isoformat()}
    record_event(conn, "order.situation_report", event, a.at)
    return Verdict(RECORDED, messages.confirmation_sms(row.code, SITUATION, hhmm, ask), a.phone, row.code,
                   row.order_id, row.id, member.team_code, member.id, SITUATION, False, next_due,
                   "situation report", hhmm=hhmm, event=event)


def _form_from_report(report: str) -> dict:
    """The fields a finishing report carries: labelled ones, and the text before them as the result."""
    p = ff.parse_fields(report or "")
    values = dict(p.values)
    if p.bare and ff.RESULT not in values:
        values[ff.RESULT] = p.bare
    return values


_LEADING_CODE = re.compile(r"^\s*(?:指令|编号)?\s*(\d{4})(?:号)?(?!\d)")


def _form_answer(conn, a: Answer, member, cfg: EscalationConfig) -> Verdict | None:
    """An SMS without a status that fills the team's feedback form (labelled fields, or a bare
    answer to the field asked for).  None: it is not one."""
    written = unicodedata.normalize("NFC", a.text or "")
    m = _LEADING_CODE.match(ff.fold_text(written))
    code, text = (m.group(1), written[m.end():]) if m else (None, written)
    rows = form_store.open_forms_for_team(conn, member.team_id, code)
    if not rows:
        return None
    if len(rows) > 1 and code is None:
        return _refuse(conn, a, NEEDS_CODE, f"ambiguous: team {member.team_code} has several forms to fill",
                       messages.needs_code_sms([r.code for r in rows]), a.phone, team_code=member.team_code,
                       member_id=member.id)
    target = rows[0]
    _row, old = ostore.load_team_state(conn, target.id)     # locked first: commander and deputy at once
    parsed = ff.parse_fields(text)
    form = form_store.load_form(conn, target.id)
    changes = dict(parsed.values)
    if parsed.bare and form["asked_field"]:
        if not changes:
            changes = ff.answer_for(form["asked_field"], parsed.bare)
        elif form["asked_field"] == ff.RESULT and ff.RESULT not in changes:
            changes[ff.RESULT] = parsed.bare
    if not changes:
        return None
    actor = f"{a.channel}:{a.phone}"
    fs = form_store.apply_tx(conn, target.id, changes, actor, a.at)
    new = replace(old, form_complete=fs.complete)
    ostore.save_team_state(conn, target.id, old, new, a.at)
    next_due = ostore.cancel_satisfied_steps_tx(conn, target.id, new, f"feedback form complete ({actor})", a.at)
    _mark_raw(conn, a.raw_id, "parsed", f"order {target.code} feedback form: {', '.join(fs.filled)}")
    _audit(conn, a.at, a, "feedback.form", f"order {target.code} team {member.team_code}",
           {"fields": fs.filled, "complete": fs.complete})
    ask = ff.ask_text(target.code, fs.asked) if fs.asked else ""
    event = form_store.record_form_event(conn, target.code, target.order_id, member.team_code, fs, actor, a.at)
    return Verdict(RECORDED, messages.form_saved_sms(target.code, member.team_name or member.team_code,
                                                     [ff.FIELD_WORD[f] for f in fs.filled], ask),
                   a.phone, target.code, target.order_id, target.id, member.team_code, member.id, FORM, False,
                   next_due, "feedback form", hhmm=local_hhmm(a.at, cfg), event=event)


def _leader_note(conn, a: Answer) -> Verdict | None:
    """A leader's SMS: a note on the order, never a team's state.  None: not a leader."""
    note = leaders_store.record_note_tx(conn, a.phone, a.text, a.raw_id, a.at)
    if note is None:
        return None
    if note.order_id is None:
        return _refuse(conn, a, NEEDS_CODE, f"leader {note.leader.name}: which order is not known",
                       messages.note_needs_code_sms(), a.phone)
    _mark_raw(conn, a.raw_id, "parsed", f"order {note.order_code} note from leader {note.leader.name}")
    _audit(conn, a.at, a, "order.note", f"order {note.order_code}", {"leader": note.leader.name})
    event = {"order_code": note.order_code, "order_id": note.order_id, "leader": note.leader.name,
             "role": note.leader.role, "text": a.text[:500], "at": a.at.isoformat()}
    record_event(conn, "order.note", event, a.at)
    return Verdict(NOTE, messages.note_saved_sms(note.order_code), a.phone, note.order_code, note.order_id,
                   reason="leader's note", event=event)
