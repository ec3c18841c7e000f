"""The feedback unit of work: one answer, judged and recorded in one transaction."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import and_, func, insert, select

from gateway.escalation.config import EscalationConfig
from gateway.escalation.deadlines import local_hhmm
from gateway.escalation.store import plan_next_situation_tx
from gateway.eventlog import record_events
from gateway.feedback import form as ff
from gateway.feedback import form_store
from gateway.storage.bulk import (among_named, built_once, bulk_insert, bulk_update, pairs_among,
                                  pairs_among_named, pairs_params, together)
from gateway.leaders import store as leaders_store
from gateway.orders import directory_queries as dq
from gateway.orders import messages
from gateway.orders import store as ostore
from gateway.orders import team_state as ts
from gateway.orders.grammar import ARRIVED, FINISHED, SITUATION, Refusal, Reply
from gateway.storage.schema import audit_log, escalation_steps, feedback, inbound_raw, member_phones, members, \
    order_teams, orders, situation_reports, teams

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
    raw_id: int | None = None               # the answer's raw row (for the log; a keypress's is written with it)


def _audit_row(a: Answer, action, subject, detail) -> dict:
    return dict(at=a.at, actor=f"{a.channel}:{a.phone}", action=action, subject=subject,
                detail={"raw_id": a.raw_id, "text": a.text[:500], **detail})


def _refuse(look, a: Answer, outcome, reason, message="", reply_to=None, **kw) -> Verdict:
    look.mark_raw(a.raw_id, "garbage" if outcome == GARBAGE else "refused", reason)
    look.audit(_audit_row(a, f"feedback.{outcome}", kw.get("order_code") or "reply", {"reason": reason}))
    return Verdict(outcome, message, reply_to, reason=reason, **kw)


def record_answer_tx(conn, a: Answer, cfg: EscalationConfig, look: "Lookups | None" = None) -> Verdict:
    if look is None:
        return record_batch_tx(conn, [a], cfg)[0]
    if a.raw_id is not None:
        raw_state = look.raw_state(a.raw_id)
        if raw_state not in (None, "new"):
            # Handed to us twice (a restart in between): judged already, do not record or answer again.
            return Verdict(DUPLICATE, reason=f"raw {a.raw_id} already {raw_state}")
    member = look.member(a.phone)
    if member is None:
        if a.channel == "sms":
            v = _leader_note(conn, a, look)
            if v is not None:
                return v
        return _refuse(look, a, REFUSED, "sender not on the roster")
    code = a.parsed.code if isinstance(a.parsed, Reply) else None
    team_code, team_name = member.team_code, member.team_name
    if isinstance(a.parsed, Refusal):
        v = _form_answer(conn, a, member, cfg, look) if a.channel == "sms" else None
        if v is not None:
            return v
        return _refuse(look, a, GARBAGE, f"unreadable reply ({a.parsed.reason})", messages.help_sms(), a.phone,
                       team_code=team_code, member_id=member.id)
    if code is not None:
        found = look.open_rows(member.team_id, code)
        if not found:
            open_codes = [r.code for r in look.open_rows(member.team_id)[:MAX_CODES]]
            return _refuse(look, a, REFUSED, f"order {code} is not an open order of team {team_code}",
                           messages.not_your_order_sms(code, open_codes), a.phone, order_code=code,
                           team_code=team_code, member_id=member.id)
        row = found[0]
    else:
        # No code typed: fine when the team has exactly one open order.
        open_rows = look.open_rows(member.team_id)[:MAX_CODES]
        open_codes = [r.code for r in open_rows]
        if not open_rows:
            return _refuse(look, a, REFUSED, f"team {team_code} has no open order",
                           messages.not_your_order_sms(None, []), a.phone, team_code=team_code, member_id=member.id)
        if len(open_rows) > 1:
            return _refuse(look, a, NEEDS_CODE, f"ambiguous: team {team_code} has several open orders",
                           messages.needs_code_sms(open_codes), a.phone, team_code=team_code, member_id=member.id)
        row = open_rows[0]
    status, report = a.parsed.status, a.parsed.report
    major = bool(row.major)
    if status == SITUATION:
        return record_situation_tx(conn, a, member, row, report, cfg, a.audio_path, a.audio_seconds, look)
    row, old = look.team_state(row.id)      # locked this time (with the batch's other rows, in id order)
    out = ts.on_answer(old, status, a.at, member.id, report)
    if not out.accepted:
        return _refuse(look, a, NOT_APPLICABLE, out.note, messages.not_applicable_sms(row.code), a.phone,
                       order_code=row.code, team_code=team_code, member_id=member.id)
    look.add_feedback(dict(order_team_id=row.id, member_id=member.id, phone=a.phone, channel=a.channel,
                           status=status, report=report or None, raw_id=a.raw_id, recorded_at=a.at))
    state, ask = out.state, ""
    if status == FINISHED:
        fs = look.apply_form(row.id, _form_from_report(report), f"{a.channel}:{a.phone}", a.at)
        state = replace(state, form_complete=fs.complete)
        ask = ff.ask_text(row.code, fs.asked) if fs.asked else ""
    # Written with the batch's others (Lookups.write); the next due time is read once the
    # batch is written (record_batch_tx), for every team it touched.
    look.save_state(row.id, old, state, a.at)
    look.cancel_satisfied(row.id, state, f"team answered {status} ({a.channel} {a.phone})", a.at, before=old)
    next_due = None
    if major and status == ARRIVED and old.arrived_at is None and state.finished_at is None:
        # On scene: the first situation report is owed a period from now.
        every = cfg.major_report_minutes
        look.write()        # the cancels above go first, as one by one
        plan_next_situation_tx(conn, row.id, a.at + timedelta(minutes=every), cfg)
        ask = f"重大事件：请每{every:g}分钟续报现场动态（{row.code} 续报 …）"
    hhmm = local_hhmm(a.at, cfg)
    note = f"order {row.code} {status}" + (f"; {out.note}" if out.note else "")
    look.mark_raw(a.raw_id, "parsed", note)
    look.audit(_audit_row(a, "feedback.recorded", f"order {row.code} team {team_code}",
                          {"status": status, "member_id": member.id, "state": out.state.state,
                           "advanced": out.advanced}))
    # An answer after the duty supervisor was alerted about this team: tell the supervisor too.
    sup_phone = None
    newly = ts.satisfied_stages(out.state) - ts.satisfied_stages(old)
    alerted = look.alerted_stages(row.id) if newly else []
    if set(alerted) & newly:        # once per alerted stage: not again for every later answer
        sup = dq.duty_supervisor(conn, a.at)
        sup_phone = sup.phone if sup else None
    order_id = row.order_id
    incident = row.incident_ref
    event = {"order_code": row.code, "order_id": order_id, "incident_ref": incident,
             "team": team_code, "team_name": team_name, "status": status, "state": out.state.state,
             "channel": a.channel, "member": member.name, "role": member.role, "phone": a.phone,
             "report": report, "at": a.at.isoformat(), "after_escalation": bool(alerted),
             "drill": bool(row.order_drill)}       # read with the row: the event log need not look it up
    look.add_event("order.feedback", event, a.at)
    return Verdict(RECORDED,
                   messages.confirmation_sms(row.code, status, hhmm, ask),
                   a.phone, row.code, order_id, row.id, team_code, member.id, status, out.advanced, next_due,
                   note, sup_phone,
                   event=event,
                   hhmm=hhmm)


def record_batch_tx(conn, answers: list[Answer], cfg: EscalationConfig, stage_sms=None,
                    stage_many=None, fresh_raw=frozenset()) -> list[Verdict]:
    """Several answers, one transaction (group commit), in arrival order; what they need to read is
    read once for the whole batch (Lookups), not once per answer, and what they write is written
    a statement per kind for the whole batch.  stage_sms: the outbox's stage_tx; each answer's
    reply (confirmation, help, the supervisor's notice) is written in the same transaction as the
    feedback (transactional outbox), on `Verdict.staged`; stage_many (the outbox's stage_many_tx)
    writes them all at once.  fresh_raw: raw ids written in this same transaction (keypresses
    journalled with their judgement): new, not looked up.
    The writes go to PostgreSQL together, a round trip for those in a row, the last ones with the
    COMMIT (bulk.together): the caller of a keypad answer waits for this transaction before
    hearing "recorded".  (The feedback engine's unit of work: nothing of the caller's follows it.)"""
    with together(conn, until_commit=True):
        return _record_batch(conn, answers, cfg, stage_sms, stage_many, fresh_raw)


def _record_batch(conn, answers, cfg, stage_sms, stage_many, fresh_raw) -> list[Verdict]:
    look = Lookups(conn, answers, fresh_raw)
    verdicts = [record_answer_tx(conn, a, cfg, look) for a in answers]
    for a, v in zip(answers, verdicts):
        v.raw_id = a.raw_id
    look.write()        # the appended rows and events, before the replies are staged (as one by one)
    # The next step due of every team the batch answered for, as committed (an earlier answer of
    # the batch for the same team gets the same, final, time: the engine keeps one per team).
    # (Read with the held writes: the times are acted on only once committed.)
    touched = {v.order_team_id for v in verdicts if v.outcome == RECORDED and v.order_team_id is not None}

    def due_times(due):
        for v in verdicts:
            if v.outcome == RECORDED and v.order_team_id is not None:
                v.next_due = due[v.order_team_id]
    if touched:
        ostore.next_due_many_later(conn, sorted(touched), due_times)
    if stage_many is not None:
        wanted = [(v, _replies(a, v)) for a, v in zip(answers, verdicts)]
        records = iter(stage_many(conn, [it for _v, items in wanted for it in items]))
        for v, items in wanted:
            v.staged = [next(records) for _ in items]
    elif stage_sms is not None:
        for a, v in zip(answers, verdicts):
            v.staged = [stage_sms(conn, it["now"], it["phone"], it["text"], purpose=it["purpose"],
                                  order_id=it["order_id"]) for it in _replies(a, v)]
    return verdicts


def record_one_tx(conn, a: Answer, cfg: EscalationConfig, stage_sms=None, stage_many=None) -> Verdict:
    return record_batch_tx(conn, [a], cfg, stage_sms, stage_many)[0]


def _replies(a: Answer, v: Verdict) -> list[dict]:
    """The SMS an answer's verdict sends (stage_tx's arguments)."""
    out = []
    if v.reply_to and v.message:
        purpose = "confirmation" if v.outcome in (RECORDED, NOTE) else "reply_help"
        out.append(dict(now=a.at, phone=v.reply_to, text=v.message, purpose=purpose, order_id=v.order_id))
    if v.supervisor_phone:
        out.append(dict(now=a.at, phone=v.supervisor_phone, text=messages.supervisor_late_answer_sms(
            v.order_code, v.event.get("team_name", v.team_code), v.status, v.hhmm),
            purpose="supervisor", order_id=v.order_id))
    # (the order.feedback event was recorded by record_answer_tx, in this same transaction)
    return out


# A ladder step that alerted the duty supervisor (or is doing so): an answer after it tells them.
_SUPERVISOR_ALERTED = (escalation_steps.c.action == "supervisor", escalation_steps.c.state.in_(("firing", "fired")))


# The batch's reads, built once per dialect (bulk.built_once): their values are parameters.
def _raw_states(conn):
    return select(inbound_raw.c.id, inbound_raw.c.state).where(among_named(conn, inbound_raw.c.id, "ids"))


def _members_by_phone(conn):
    return (select(members.c.id, members.c.team_id, members.c.name, members.c.role, member_phones.c.e164,
                   teams.c.code, teams.c.name)
            .join(member_phones, member_phones.c.member_id == members.c.id)
            .join(teams, teams.c.id == members.c.team_id)
            .where(among_named(conn, member_phones.c.e164, "phones"), members.c.active.is_(True),
                   teams.c.active.is_(True)))


def _lock_named_open(conn):
    return _locking(conn, and_(pairs_among_named(conn, (order_teams.c.team_id, orders.c.code), "named"),
                               orders.c.state == "open"))


def _lock_by_ids(conn):
    return _locking(conn, among_named(conn, order_teams.c.id, "ids"))


def _locking(conn, where):
    """The order teams `where` says, locked on PostgreSQL, with their orders' columns and the
    stages the duty supervisor was alerted about."""
    es = escalation_steps
    pg = conn.dialect.name == "postgresql"
    alerted = (select(func.array_agg(es.c.stage) if pg else func.group_concat(es.c.stage, ","))
               .where(es.c.order_team_id == order_teams.c.id, *_SUPERVISOR_ALERTED)
               .scalar_subquery().label("alerted_stages"))
    q = (select(order_teams, orders.c.code, orders.c.rule, orders.c.major, orders.c.state.label("order_state"),
                orders.c.created_at.label("order_created_at"), orders.c.incident_ref,
                orders.c.drill.label("order_drill"), alerted)
         .join(orders, orders.c.id == order_teams.c.order_id)
         .where(where).order_by(order_teams.c.id))
    return q.with_for_update(of=order_teams) if pg else q


class Lookups:
    """What a batch of answers reads, in a few queries instead of several per answer, and the rows
    it only appends (feedback, audit, events, raw states), written together by `write()` before
    the commit (a burst of replies is judged at the rate of its round trips to the database).
    Answers later in the batch see what earlier ones wrote (raw states, team states): the cache
    is kept in step by `mark_raw`/`saved`.  The team rows are locked on PostgreSQL in id order,
    like the escalation engine's claims (ostore.load_team_states), so the two never deadlock."""

    def __init__(self, conn, answers: list[Answer], fresh_raw=frozenset()):
        self.conn = conn
        self._raw_marks: list[dict] = []
        self._audits: list[dict] = []
        self._feedback: list[dict] = []
        self._events: list[tuple[str, dict, datetime]] = []
        self._state_saves: dict[int, dict] = {}     # order team -> columns changed (in answer order)
        self._cancels: list[dict] = []
        self._forms: dict[int, dict] = {}           # order team -> its feedback form, as written so far
        self._form_writes: dict[int, tuple[dict, bool]] = {}    # order team -> (columns, a new row?)
        raw_ids = sorted({a.raw_id for a in answers if a.raw_id is not None} - set(fresh_raw))
        self._raw = dict(conn.execute(built_once(conn, _raw_states), {"ids": raw_ids}).all()) \
            if raw_ids else {}
        self._raw.update(dict.fromkeys(fresh_raw, "new"))
        phones = sorted({a.phone for a in answers})
        self._members: dict[str, dq.Member] = {}
        for r in conn.execute(built_once(conn, _members_by_phone), {"phones": phones}):
            self._members.setdefault(r[4], dq.Member(*r))      # as dq.member_by_phone: the first found
        # The named orders of the teams that answered (a team may have hundreds open: only these).
        named = sorted({(m.team_id, a.parsed.code) for a in answers if isinstance(a.parsed, Reply)
                        and a.parsed.code is not None and (m := self._members.get(a.phone)) is not None})
        self._named: dict[tuple[int, str], list] = {k: [] for k in named}
        self._states: dict[int, tuple] = {}
        self._alerted: dict[int, list[str]] = {}     # order team -> stages alerted (read by _lock)
        replies = [a for a in answers if isinstance(a.parsed, Reply) and a.phone in self._members]
        if named and all(a.parsed.code is not None for a in replies):
            # Every reply names its order (a keypress always does): the named rows are the rows
            # the batch changes, locked and read as they are found, in id order (one statement).
            found = self._lock_where(_lock_named_open, pairs_params(conn, "named", 2, named))
            for r in sorted(found, key=lambda r: (r.order_created_at, r.order_id), reverse=True):
                self._named[(r.team_id, r.code)].append(r)
        elif named:
            for r in conn.execute(
                    select(order_teams.c.team_id, order_teams.c.id, order_teams.c.order_id, orders.c.code, orders.c.rule,
                           orders.c.major)
                    .join(orders, orders.c.id == order_teams.c.order_id)
                    .where(and_(pairs_among(conn, (order_teams.c.team_id, orders.c.code), named), orders.c.state == "open"))
                    .order_by(orders.c.created_at.desc(), orders.c.id.desc())):
                self._named[(r.team_id, r.code)].append(r)
        self._newest: dict[int, list] = {}      # team -> its newest open orders (answers with no code)
        # The rows the batch will change: each answer's order (or its team's only open order),
        # locked together at the first that needs it unless locked already.
        self._to_lock: set[int] = set()
        for a in replies:
            rows = self.open_rows(self._members[a.phone].team_id, a.parsed.code)
            if rows and (a.parsed.code is not None or len(rows) == 1) and rows[0].id not in self._states:
                self._to_lock.add(rows[0].id)

    def raw_state(self, raw_id: int):
        return self._raw.get(raw_id)

    # --- what the batch appends, written together --------------------------------------------
    def mark_raw(self, raw_id, state: str, note: str) -> None:
        if raw_id is not None:
            self._raw[raw_id] = state
            self._raw_marks.append({"id": raw_id, "state": state, "note": note})

    def audit(self, row: dict) -> None:
        self._audits.append(row)

    def add_feedback(self, row: dict) -> None:
        self._feedback.append(row)

    def add_event(self, kind: str, payload: dict, at: datetime) -> None:
        self._events.append((kind, payload, at))

    def save_state(self, order_team_id: int, old, new, now: datetime) -> None:
        """As ostore.save_team_state, written by write(); later answers of the batch see `new`."""
        changes = ostore.team_state_changes(old, new, now)
        if changes:
            self._state_saves.setdefault(order_team_id, {}).update(changes)
        self.saved(order_team_id, new)

    def cancel_satisfied(self, order_team_id: int, state, why: str, now: datetime, before=None) -> None:
        """As ostore.cancel_satisfied_steps_tx (without the next due time), written by write().
        `before`: the state this answer found; the stages it had satisfied already were stopped
        by the answer that satisfied them (and a step of a satisfied stage is cancelled, never
        fired, when it is claimed: gateway/escalation/store.py), so only the new ones are looked up."""
        done = ts.satisfied_stages(state) - (ts.satisfied_stages(before) if before is not None else set())
        for stage in sorted(done):
            self._cancels.append({"ot": order_team_id, "stage": stage, "why": why, "now": now})

    def form(self, order_team_id: int) -> dict:
        """The team's feedback form (form_store.load_form), as the batch has filled it so far; the
        forms of every team row the batch locked are read at once."""
        if order_team_id not in self._forms:
            ids = (set(self._states) - set(self._forms)) | {order_team_id}
            self._forms.update(form_store.load_forms(self.conn, ids))
        return self._forms[order_team_id]

    def apply_form(self, order_team_id: int, changes: dict, actor: str, at: datetime):
        """As form_store.apply_tx, written by write()."""
        old = self.form(order_team_id)
        fs, row, new = form_store.plan_form(old, changes, actor, at)
        self._forms[order_team_id] = form_store.form_after(old, row)
        if order_team_id in self._form_writes:
            before, new = self._form_writes[order_team_id]
            row = {**before, **row}
        self._form_writes[order_team_id] = (row, new)
        return fs

    def write(self) -> None:
        """The batch's writes so far, a statement each for the whole batch (executemany), in
        answer order: forms, team states, the steps they stop, then the appended rows."""
        conn = self.conn
        if self._form_writes:
            form_store.write_forms(conn, self._form_writes)
            self._form_writes = {}
        if self._state_saves:
            ostore.save_team_changes_many(conn, self._state_saves)
        if self._cancels:
            ostore.cancel_stages_many(conn, self._cancels)
        self._state_saves, self._cancels = {}, []
        bulk_insert(conn, feedback, self._feedback)
        bulk_update(conn, inbound_raw, ("id",), self._raw_marks)
        bulk_insert(conn, audit_log, self._audits)
        if self._events:
            record_events(conn, self._events, ids_unread=True)
        self._raw_marks, self._audits, self._feedback, self._events = [], [], [], []

    def member(self, phone: str):
        return self._members.get(phone)

    def open_rows(self, team_id: int, code: str | None = None) -> list:
        """With a code: that open order of the team; without: the team's newest open orders
        (MAX_CODES of them), newest first."""
        if code is not None:
            rows = self._named.get((team_id, code))
            if rows is None:
                rows = self._named[(team_id, code)] = ostore.open_order_teams_for_team(self.conn, team_id, code)
            return rows
        if team_id not in self._newest:
            self._newest[team_id] = ostore.open_order_teams_for_team(self.conn, team_id, limit=MAX_CODES)
        return self._newest[team_id]

    def team_state(self, order_team_id: int):
        """(row, state) of an order team the batch changes; on first use every such row of the
        batch is locked and read at once."""
        if self._to_lock:
            ids, self._to_lock = sorted(self._to_lock | {order_team_id}), set()
            self._lock(ids)
        if order_team_id not in self._states:
            self._lock([order_team_id])
        return self._states[order_team_id]

    def _lock(self, ids: list[int]) -> None:
        self._lock_where(_lock_by_ids, {"ids": ids})

    def _lock_where(self, build, params: dict) -> list:
        """Lock and read the order teams that the statement `build(conn)` selects with `params` (in
        id order, as the escalation engine's claims lock them), with the stages the duty supervisor
        was alerted about for each (read with the rows: no round trip of its own).  The rows."""
        rows = self.conn.execute(built_once(self.conn, build), params).all()
        for row in rows:
            self._states[row.id] = (row, ostore.team_state_from_row(row, row.rule))
            stages = row.alerted_stages or []
            self._alerted[row.id] = stages.split(",") if isinstance(stages, str) else list(stages)
        return rows

    def saved(self, order_team_id: int, state) -> None:
        row, _old = self._states[order_team_id]
        self._states[order_team_id] = (row, state)

    def alerted_stages(self, order_team_id: int) -> list[str]:
        """Stages the duty supervisor was alerted about (read when the team's row was locked)."""
        if order_team_id not in self._alerted:
            self._alerted[order_team_id] = list(self.conn.execute(select(escalation_steps.c.stage).where(
                escalation_steps.c.order_team_id == order_team_id, *_SUPERVISOR_ALERTED)).scalars())
        return self._alerted[order_team_id]


def open_codes_for_phone_tx(conn, phone: str) -> list[str]:
    m = dq.member_by_phone(conn, phone)
    if m is None:
        return []
    return [r.code for r in ostore.open_order_teams_for_team(conn, m.team_id, limit=20)]


# --- situation reports, the feedback form, leaders' notes --------------------------------------

def record_situation_tx(conn, a: Answer, member, row, text: str, cfg: EscalationConfig,
                        audio_path: str | None = None, audio_seconds: float | None = None,
                        look: "Lookups | None" = None) -> Verdict:
    """A situation report (现场动态): kept on the order's timeline; never a team's state.  On a major
    order with the team on scene, the next report is owed a period from now."""
    look = look or Lookups(conn, [])
    look.write()        # what earlier answers of the batch appended goes first (event order)
    _row, st = look.team_state(row.id)
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
    look.mark_raw(a.raw_id, "parsed", f"order {row.code} situation report")
    look.audit(_audit_row(a, "feedback.situation", f"order {row.code} team {member.team_code}",
                          {"member_id": member.id, "audio": audio_path, "seconds": audio_seconds}))
    what = text or (f"[录音{audio_seconds:.0f}秒]" if audio_seconds is not None else "")
    event = {"order_code": row.code, "order_id": row.order_id, "team": member.team_code,
             "team_name": member.team_name, "member": member.name, "phone": a.phone,
             "channel": a.channel, "text": what, "audio_seconds": audio_seconds, "at": a.at.isoformat()}
    look.add_event("order.situation_report", event, a.at)
    look.write()
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


def _form_answer(conn, a: Answer, member, cfg: EscalationConfig, look: "Lookups") -> Verdict | None:
    """An SMS without a status that fills the team's feedback form (labelled fields, or a bare
    answer to the field asked for).  None: it is not one."""
    written = unicodedata.normalize("NFC", a.text or "")
    m = _LEADING_CODE.match(ff.fold_text(written))
    code, text = (m.group(1), written[m.end():]) if m else (None, written)
    look.write()        # the team states earlier answers of the batch changed: read below
    rows = form_store.open_forms_for_team(conn, member.team_id, code)
    if not rows:
        return None
    if len(rows) > 1 and code is None:
        return _refuse(look, a, NEEDS_CODE, f"ambiguous: team {member.team_code} has several forms to fill",
                       messages.needs_code_sms([r.code for r in rows]), a.phone, team_code=member.team_code,
                       member_id=member.id)
    target = rows[0]
    look.write()        # what earlier answers of the batch appended goes first (event order)
    _row, old = look.team_state(target.id)     # locked first: commander and deputy at once
    parsed = ff.parse_fields(text)
    form = look.form(target.id)
    changes = dict(parsed.values)
    if parsed.bare and form["asked_field"]:
        if not changes:
            changes = ff.answer_for(form["asked_field"], parsed.bare)
        elif form["asked_field"] == ff.RESULT and ff.RESULT not in changes:
            changes[ff.RESULT] = parsed.bare
    if not changes:
        return None
    actor = f"{a.channel}:{a.phone}"
    fs = look.apply_form(target.id, changes, actor, a.at)
    new = replace(old, form_complete=fs.complete)
    ostore.save_team_state(conn, target.id, old, new, a.at)
    look.saved(target.id, new)
    next_due = ostore.cancel_satisfied_steps_tx(conn, target.id, new, f"feedback form complete ({actor})", a.at)
    look.mark_raw(a.raw_id, "parsed", f"order {target.code} feedback form: {', '.join(fs.filled)}")
    look.audit(_audit_row(a, "feedback.form", f"order {target.code} team {member.team_code}",
                          {"fields": fs.filled, "complete": fs.complete}))
    look.write()
    ask = ff.ask_text(target.code, fs.asked) if fs.asked else ""
    event = form_store.record_form_event(conn, target.code, target.order_id, member.team_code, fs, actor, a.at)
    return Verdict(RECORDED, messages.form_saved_sms(target.code, member.team_name or member.team_code,
                                                     [ff.FIELD_WORD[f] for f in fs.filled], ask),
                   a.phone, target.code, target.order_id, target.id, member.team_code, member.id, FORM, False,
                   next_due, "feedback form", hhmm=local_hhmm(a.at, cfg), event=event)


def _leader_note(conn, a: Answer, look: "Lookups") -> Verdict | None:
    """A leader's SMS: a note on the order, never a team's state.  None: not a leader."""
    look.write()        # what earlier answers of the batch appended goes first (event order)
    note = leaders_store.record_note_tx(conn, a.phone, a.text, a.raw_id, a.at)
    if note is None:
        return None
    if note.order_id is None:
        return _refuse(look, a, NEEDS_CODE, f"leader {note.leader.name}: which order is not known",
                       messages.note_needs_code_sms(), a.phone)
    look.mark_raw(a.raw_id, "parsed", f"order {note.order_code} note from leader {note.leader.name}")
    look.audit(_audit_row(a, "order.note", f"order {note.order_code}", {"leader": note.leader.name}))
    event = {"order_code": note.order_code, "order_id": note.order_id, "leader": note.leader.name,
             "role": note.leader.role, "text": a.text[:500], "at": a.at.isoformat()}
    look.add_event("order.note", event, a.at)
    look.write()
    return Verdict(NOTE, messages.note_saved_sms(note.order_code), a.phone, note.order_code, note.order_id,
                   reason="leader's note", event=event)
