"""Leaders' units of work (inside Database.run): who they are, what news is due, their notes.

What a leader is told is derived from committed rows alone (the order, its teams, the escalation
steps fired, the situation reports): each sweep writes the news not yet written, one row per leader
and piece of news (a unique `dedupe` key makes it exactly once), and the notifier hands the
queued rows to the SMS outbox.  A restart loses nothing and repeats nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, insert, or_, select, update

from gateway.escalation.config import EscalationConfig
from gateway.escalation.deadlines import RECEIPT, local_hhmm
from gateway.leaders import messages
from gateway.leaders.config import LeadersSection
from gateway.orders.team_state import STATE_WORD
from gateway.orders.times import utc
from gateway.storage.schema import (escalation_steps, leader_notifications, leaders, order_notes, order_teams,
                                    orders, situation_reports, teams)

CLOSED_LOOKBACK = timedelta(days=2)      # a major order closed this recently may still owe "finished"


@dataclass(frozen=True)
class Leader:
    id: int
    name: str
    role: str
    title: str | None
    phone: str


def active_leaders(conn, roles) -> list[Leader]:
    rows = conn.execute(select(leaders.c.id, leaders.c.name, leaders.c.role, leaders.c.title, leaders.c.e164)
                        .where(leaders.c.active.is_(True), leaders.c.e164.is_not(None),
                               leaders.c.role.in_(list(roles))).order_by(leaders.c.id)).all()
    return [Leader(*r) for r in rows]


def leader_by_phone(conn, phone: str) -> Leader | None:
    r = conn.execute(select(leaders.c.id, leaders.c.name, leaders.c.role, leaders.c.title, leaders.c.e164)
                     .where(leaders.c.e164 == phone, leaders.c.active.is_(True))).first()
    return Leader(*r) if r else None


def _queue(conn, people: list[Leader], order_id, kind: str, dedupe: str, text: str, at: datetime) -> int:
    if not people:
        return 0
    have = set(conn.execute(select(leader_notifications.c.leader_id)
                            .where(leader_notifications.c.dedupe == dedupe,
                                   leader_notifications.c.leader_id.in_([p.id for p in people]))).scalars())
    rows = [dict(order_id=order_id, leader_id=p.id, phone=p.phone, kind=kind, dedupe=dedupe, text=text,
                 state="queued", created_at=at) for p in people if p.id not in have]
    if rows:
        conn.execute(insert(leader_notifications), rows)
    return len(rows)


def _states(team_rows) -> str:
    counts: dict[str, int] = {}
    for t in team_rows:
        counts[t.state] = counts.get(t.state, 0) + 1
    return "，".join(f"{STATE_WORD.get(k, k)}{v}" for k, v in sorted(counts.items()))


def _major_news(conn, o, now: datetime, rules: LeadersSection, cfg: EscalationConfig):
    """(kind, dedupe, text) of everything this major order has to tell, as of now."""
    hh = lambda t: local_hhmm(t, cfg)  # noqa: E731
    rows = conn.execute(select(order_teams.c.id, order_teams.c.state, order_teams.c.arrived_at,
                               order_teams.c.finished_at, teams.c.name)
                        .join(teams, teams.c.id == order_teams.c.team_id)
                        .where(order_teams.c.order_id == o.id)).all()
    names = {r.id: r.name for r in rows}
    yield "created", f"created:{o.id}", messages.created(o.code, o.incident_ref, o.text, [r.name for r in rows],
                                                           o.onscene_commander or "")
    on_scene = sorted((utc(r.arrived_at or r.finished_at), r.name) for r in rows if r.arrived_at or r.finished_at)
    if on_scene:
        yield "first_arrived", f"first_arrived:{o.id}", messages.first_arrived(o.code, on_scene[0][1],
                                                                              hh(on_scene[0][0]))
    active = [r for r in rows if r.state != "declined"]
    if active and len(on_scene) >= len(active) and all(r.arrived_at or r.finished_at for r in active):
        yield "all_arrived", f"all_arrived:{o.id}", messages.all_arrived(o.code, len(active), on_scene[-1][1],
                                                                        hh(on_scene[-1][0]))
    for s in conn.execute(select(escalation_steps.c.id, escalation_steps.c.order_team_id, escalation_steps.c.stage,
                                 escalation_steps.c.due_at)
                          .where(escalation_steps.c.order_team_id.in_(list(names)), escalation_steps.c.step == 1,
                                 escalation_steps.c.stage != RECEIPT,     # a deadline of the rules, not a read receipt
                                 escalation_steps.c.state.in_(("firing", "fired")))):
        yield "missed", f"missed:{s.id}", messages.missed(o.code, names[s.order_team_id], s.stage, hh(utc(s.due_at)))
    done = o.state != "open" or (active and all(r.finished_at for r in active))
    if done:
        at = utc(o.closed_at) if o.state != "open" and o.closed_at else max(
            (utc(r.finished_at) for r in active if r.finished_at), default=now)
        yield "finished", f"finished:{o.id}", messages.finished(o.code, len(active), hh(at), o.state != "open")
    period = timedelta(minutes=rules.digest_minutes)
    n = int((now - utc(o.created_at)) / period)
    if o.state == "open" and n >= 1:
        end = utc(o.created_at) + n * period
        start = end - period
        reps = conn.execute(select(situation_reports.c.recorded_at, situation_reports.c.text,
                                   situation_reports.c.audio_seconds, situation_reports.c.order_team_id)
                            .where(situation_reports.c.order_id == o.id, situation_reports.c.recorded_at > start,
                                   situation_reports.c.recorded_at <= end)
                            .order_by(situation_reports.c.recorded_at, situation_reports.c.id)).all()
        items = [(names.get(r.order_team_id, "?"), hh(utc(r.recorded_at)),
                  r.text or f"[录音{r.audio_seconds or 0:.0f}秒]") for r in reps]
        yield "digest", f"digest:{o.id}:{n}", messages.digest(o.code, f"{hh(start)}-{hh(end)}", items,
                                                              "（" + _states(rows) + "）")


def _daily_news(conn, now: datetime, rules: LeadersSection, cfg: EscalationConfig):
    zone = ZoneInfo(cfg.timezone)
    local = now.astimezone(zone)
    h, m = (int(x) for x in rules.daily_digest_at.split(":"))
    due = datetime.combine(local.date(), time(h, m), zone)
    if local < due:
        due -= timedelta(days=1)
    start = due - timedelta(days=1)
    rows = conn.execute(select(orders.c.id, orders.c.code, orders.c.incident_ref)
                        .where(orders.c.major.is_(False), orders.c.created_at >= start.astimezone(zone),
                               orders.c.created_at < due.astimezone(zone))
                        .order_by(orders.c.created_at, orders.c.id)).all()
    if not rows:
        return                         # nothing to report: no SMS at 08:00 saying so
    items = []
    for r in rows:
        trows = conn.execute(select(order_teams.c.state).where(order_teams.c.order_id == r.id)).all()
        items.append((r.code, r.incident_ref, _states(trows)))
    yield "daily", f"daily:{due.date().isoformat()}", messages.daily(start.date().strftime("%m-%d"), items)


def sweep_tx(conn, now: datetime, rules: LeadersSection, cfg: EscalationConfig) -> int:
    """Write the news due now (not written before); returns how many notifications were queued."""
    queued = 0
    major = active_leaders(conn, rules.major_roles)
    if major:
        recent = or_(orders.c.state == "open", orders.c.closed_at >= now - CLOSED_LOOKBACK)
        for o in conn.execute(select(orders).where(orders.c.major.is_(True), recent).order_by(orders.c.id)).all():
            for kind, dedupe, text in _major_news(conn, o, now, rules, cfg):
                if kind in rules.major_events:
                    queued += _queue(conn, major, o.id, kind, dedupe, text, now)
    daily = active_leaders(conn, rules.daily_roles)
    if daily:
        for kind, dedupe, text in _daily_news(conn, now, rules, cfg):
            queued += _queue(conn, daily, None, kind, dedupe, text, now)
    return queued


def queued_tx(conn, limit: int = 200) -> list:
    return conn.execute(select(leader_notifications.c.id, leader_notifications.c.phone, leader_notifications.c.text,
                               leader_notifications.c.order_id, leader_notifications.c.kind)
                        .where(leader_notifications.c.state == "queued")
                        .order_by(leader_notifications.c.id).limit(limit)).all()


def mark_handed_tx(conn, ids: list[int], now: datetime) -> None:
    if ids:
        conn.execute(update(leader_notifications).where(leader_notifications.c.id.in_(ids))
                     .values(state="handed", handed_at=now))


# --- a leader's reply: a note on the order ------------------------------------------------------

_CODE = re.compile(r"(?<!\d)(\d{4})(?!\d)")


@dataclass(frozen=True)
class Note:
    leader: Leader
    order_id: int | None         # None: which order could not be told
    order_code: str | None


def record_note_tx(conn, phone: str, text: str, raw_id: int | None, at: datetime) -> Note | None:
    """A leader's SMS kept as a note on the order it names (or the last one they were told of).
    None: the sender is not a leader."""
    leader = leader_by_phone(conn, phone)
    if leader is None:
        return None
    m = _CODE.search(text or "")
    row = None
    if m:
        row = conn.execute(select(orders.c.id, orders.c.code).where(orders.c.code == m.group(1))
                           .order_by((orders.c.state == "open").desc(), orders.c.created_at.desc())).first()
    if row is None:
        row = conn.execute(select(orders.c.id, orders.c.code)
                           .join(leader_notifications, leader_notifications.c.order_id == orders.c.id)
                           .where(and_(leader_notifications.c.leader_id == leader.id))
                           .order_by(leader_notifications.c.id.desc())).first()
    if row is None:
        return Note(leader, None, None)
    conn.execute(insert(order_notes).values(order_id=row.id, leader_id=leader.id, author=leader.name, phone=phone,
                                            text=(text or "")[:2000], raw_id=raw_id, at=at))
    return Note(leader, row.id, row.code)
