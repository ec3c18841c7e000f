"""The roster check: every commander and deputy gets a short test message asking them to reply 1
(or press 1 on the call, with --voice); the check then says who confirmed, who did not, and which
numbers failed (not registered, unreachable): the stale-number problem of every paging system.

A check is an order of kind `roster_check`: it travels the same way (the outbox, the order
caller), its replies are recorded by the same feedback engine (per member, with channel and
time), but it has no deadline, so no escalation step is planned for it, and its SMS says what it
is.  It stays open until closed, so that late confirmations still count."""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update

from gateway.orders.directory_queries import COMMAND_ROLES
from gateway.orders.order import OrderRequest, Target
from gateway.orders.store import create_order_tx
from gateway.orders.times import utc
from gateway.storage.schema import (deliveries, escalation_steps, feedback, member_phones, members, order_teams,
                                    orders, teams)

ROSTER_CHECK = "roster_check"
CHECK_TEXT = "通讯录核对，请确认本号码可用。"
FAILED_SMS = ("failed",)
FAILED_VOICE = ("failed", "busy", "no_answer", "nosuch", "congestion")


@dataclass(frozen=True)
class CheckCreated:
    code: str
    order_id: int
    teams: int
    people: int


def create_check_tx(conn, target: Target, voice: bool, now: datetime, cfg, rng: random.Random,
                    by: str) -> CheckCreated:
    req = OrderRequest("ROSTER-CHECK", "ordinary", CHECK_TEXT, target, "same_township", voice=voice,
                       created_by=by)
    created = create_order_tx(conn, req, now, cfg, rng)
    conn.execute(update(orders).where(orders.c.id == created.order_id).values(kind=ROSTER_CHECK,
                                                                                onscene_commander=None))
    ot_ids = select(order_teams.c.id).where(order_teams.c.order_id == created.order_id)
    conn.execute(delete(escalation_steps).where(escalation_steps.c.order_team_id.in_(ot_ids)))
    people = conn.execute(select(deliveries.c.id).where(deliveries.c.order_id == created.order_id,
                                                        deliveries.c.channel == "sms")).all()
    return CheckCreated(created.code, created.order_id, len(created.team_ids), len(people))


@dataclass
class PersonResult:
    team_code: str
    team_name: str
    role: str
    name: str
    phone: str
    confirmed_at: datetime | None = None
    channel: str | None = None
    sms: str | None = None            # the SMS delivery's state
    voice: list = None                # the order calls' states
    detail: str = ""

    @property
    def failed(self) -> bool:
        """The number did not work: the SMS failed, or every call failed (and nothing confirmed)."""
        if self.confirmed_at is not None:
            return False
        calls_failed = bool(self.voice) and all(v in FAILED_VOICE for v in self.voice)
        return self.sms in FAILED_SMS or calls_failed


def check_status_tx(conn, code: str) -> tuple[object, list[PersonResult]] | None:
    o = conn.execute(select(orders).where(orders.c.code == code, orders.c.kind == ROSTER_CHECK)
                     .order_by(orders.c.created_at.desc())).first()
    if o is None:
        return None
    team_ids = select(order_teams.c.team_id).where(order_teams.c.order_id == o.id)
    rows = conn.execute(select(members.c.id, members.c.name, members.c.role, teams.c.code, teams.c.name.label("tn"),
                               member_phones.c.e164)
                        .join(teams, teams.c.id == members.c.team_id)
                        .join(member_phones, member_phones.c.member_id == members.c.id)
                        .where(members.c.team_id.in_(team_ids), members.c.role.in_(COMMAND_ROLES),
                               members.c.active.is_(True))
                        .order_by(teams.c.code, members.c.role, members.c.id, member_phones.c.rank)).all()
    out: dict[str, PersonResult] = {}
    for r in rows:
        out[r.e164] = PersonResult(r.code, r.tn, r.role, r.name, r.e164, voice=[])
    for d in conn.execute(select(deliveries.c.phone, deliveries.c.channel, deliveries.c.state, deliveries.c.detail)
                          .where(deliveries.c.order_id == o.id).order_by(deliveries.c.id)):
        p = out.get(d.phone)
        if p is None:
            continue
        if d.channel == "sms":
            p.sms, p.detail = d.state, d.detail or p.detail
        elif d.state not in ("requested", "handing"):
            p.voice.append(d.state)
    ot = select(order_teams.c.id).where(order_teams.c.order_id == o.id)
    for f in conn.execute(select(feedback.c.phone, feedback.c.channel, feedback.c.recorded_at)
                          .where(feedback.c.order_team_id.in_(ot), feedback.c.status == "received")
                          .order_by(feedback.c.id)):
        p = out.get(f.phone)
        if p is not None and p.confirmed_at is None:
            p.confirmed_at, p.channel = utc(f.recorded_at), f.channel
    return o, list(out.values())


def render_status(o, people: list[PersonResult], zone) -> str:
    confirmed = [p for p in people if p.confirmed_at]
    failed = [p for p in people if p.failed]
    silent = [p for p in people if not p.confirmed_at and not p.failed]
    role = {"commander": "指挥", "deputy": "副指挥"}
    channel = {"sms": "短信", "keypad": "按键"}
    lines = [f"通讯录核对 {o.code}  {utc(o.created_at).astimezone(zone):%Y-%m-%d %H:%M}  {o.state}  "
             f"共 {len(people)} 人：已确认 {len(confirmed)}，未确认 {len(silent)}，号码失败 {len(failed)}"]
    for title, group in (("号码失败（未登记、无法接通）", failed), ("未确认", silent), ("已确认", confirmed)):
        if not group:
            continue
        lines.append(f"{title}：")
        for p in group:
            how = (f"{p.confirmed_at.astimezone(zone):%H:%M} {channel.get(p.channel, p.channel)}" if p.confirmed_at
                   else f"短信 {p.sms or '-'}" + (f"，电话 {'/'.join(p.voice)}" if p.voice else "")
                   + (f"（{p.detail}）" if p.failed and p.detail else ""))
            lines.append(f"  {p.team_code:<8} {p.team_name:<14} {role.get(p.role, p.role):<4} {p.name:<6} "
                         f"{p.phone}  {how}")
    return "\n".join(lines)
