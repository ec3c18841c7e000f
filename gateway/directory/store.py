"""Writing a checked roster into the database, and reading the directory back.

Import is one transaction: teams are matched by code and members by name within their team,
so ids (and the history of orders and feedback that refer to them) survive a re-import.  A team
or member no longer in the file is kept but marked inactive, and its phones are released.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from gateway.directory.roster import Roster, RosterError
from gateway.directory.pins import hash_pin
from gateway.storage.schema import audit_log, duty_roster, member_phones, members, teams


@dataclass
class ImportSummary:
    teams: int
    members: int
    phones: int
    experts: int
    expert_categories: int
    supervisors: int | None
    deactivated_teams: int
    deactivated_members: int
    leaders: int | None = None        # the command structure's leaders listed (None: not in the file)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def import_roster(conn: Connection, roster: Roster, *, source: str, actor: str) -> ImportSummary:
    """Apply a checked roster: the whole directory, so a team or member it leaves out is kept
    (its history points at it) but made inactive, and its phones are released."""
    now = _now()
    in_file = {t.code for t in roster.teams}
    existing = {r.code: r.id for r in conn.execute(select(teams.c.code, teams.c.id))}
    deactivated_teams = conn.execute(
        update(teams).where(teams.c.code.not_in(in_file)).where(teams.c.active.is_(True)).values(active=False)
    ).rowcount
    # Phones are re-written for every team in the file and released for every team no longer in
    # it: a phone may move, and an old phone of a removed team is a stranger's from now on.
    if existing:
        member_ids = select(members.c.id).where(members.c.team_id.in_(list(existing.values())))
        conn.execute(delete(member_phones).where(member_phones.c.member_id.in_(member_ids)))
    deactivated_members = conn.execute(
        update(members).where(members.c.team_id.in_(select(teams.c.id).where(teams.c.active.is_(False))))
        .where(members.c.active.is_(True)).values(active=False)).rowcount

    n_members = n_phones = 0
    for t in roster.teams:
        values = dict(name=t.name, kind=t.kind, township=t.township, township_class=t.township_class,
                      min_size=t.min_size, active=True)
        if t.code in existing:
            team_id = existing[t.code]
            conn.execute(update(teams).where(teams.c.id == team_id).values(**values))
        else:
            team_id = conn.execute(insert(teams).values(code=t.code, created_at=now, **values)
                                   .returning(teams.c.id)).scalar_one()
        old = {r.name: r.id for r in conn.execute(select(members.c.name, members.c.id)
                                                  .where(members.c.team_id == team_id))}
        for m in t.members:
            mvalues = dict(role=m.role, specialty=m.specialty, category=m.category, active=True,
                           pin_hash=hash_pin(m.pin) if m.pin else None)   # the file decides: no pin, none
            if m.name in old:
                member_id = old.pop(m.name)
                conn.execute(update(members).where(members.c.id == member_id).values(**mvalues))
            else:
                member_id = conn.execute(insert(members).values(team_id=team_id, name=m.name, **mvalues)
                                         .returning(members.c.id)).scalar_one()
            n_members += 1
            for rank, phone in enumerate(m.phones):
                conn.execute(insert(member_phones).values(member_id=member_id, e164=phone, rank=rank))
                n_phones += 1
        if old:
            deactivated_members += conn.execute(
                update(members).where(members.c.id.in_(list(old.values()))).values(active=False)).rowcount

    n_supervisors = None
    if roster.supervisors is not None:
        conn.execute(delete(duty_roster))
        for s in roster.supervisors:
            conn.execute(insert(duty_roster).values(name=s.name, e164=s.phone, starts_at=s.starts_at, ends_at=s.ends_at))
        n_supervisors = len(roster.supervisors)

    n_leaders = None
    if roster.leaders is not None:
        from gateway.directory.leaders import import_leaders
        n_leaders, _gone = import_leaders(conn, roster.leaders, now)

    experts = [m for t in roster.teams if t.kind == "expert" for m in t.members if m.category]
    summary = ImportSummary(teams=len(roster.teams), members=n_members, phones=n_phones, experts=len(experts),
                            expert_categories=len({m.category for m in experts}), supervisors=n_supervisors,
                            deactivated_teams=deactivated_teams, deactivated_members=deactivated_members,
                            leaders=n_leaders)
    conn.execute(insert(audit_log).values(at=now, actor=actor, action="directory.import", subject=source,
                                          detail=summary.__dict__))
    return summary


@dataclass
class TeamView:
    code: str
    name: str
    kind: str
    township: str | None
    township_class: int | None
    min_size: int | None
    members: int
    commander: tuple[str, str | None] | None     # (name, first phone)
    deputies: list[tuple[str, str | None]]
    experts_by_category: dict[str, int]


def list_teams(conn: Connection, *, include_inactive: bool = False) -> list[TeamView]:
    q = select(teams).order_by(teams.c.kind, teams.c.code)
    if not include_inactive:
        q = q.where(teams.c.active.is_(True))
    team_rows = conn.execute(q).all()
    first_phone = {r.member_id: r.e164 for r in conn.execute(
        select(member_phones.c.member_id, member_phones.c.e164).order_by(member_phones.c.rank.desc()))}
    by_team: dict[int, list] = {}
    for m in conn.execute(select(members).where(members.c.active.is_(True)).order_by(members.c.id)):
        by_team.setdefault(m.team_id, []).append(m)
    out = []
    order = {"public": 0, "professional": 1, "expert": 2}
    for t in sorted(team_rows, key=lambda r: (order.get(r.kind, 9), r.code)):
        ms = by_team.get(t.id, [])
        commander = next(((m.name, first_phone.get(m.id)) for m in ms if m.role == "commander"), None)
        deputies = [(m.name, first_phone.get(m.id)) for m in ms if m.role == "deputy"]
        cats: dict[str, int] = {}
        for m in ms:
            if m.category:
                cats[m.category] = cats.get(m.category, 0) + 1
        out.append(TeamView(t.code, t.name, t.kind, t.township, t.township_class, t.min_size, len(ms),
                            commander, deputies, cats))
    return out


def format_teams(views: list[TeamView]) -> str:
    """The dispatcher's view: one line per team with its commander and deputy."""
    if not views:
        return "No teams in the directory. Import a roster: yihu directory import FILE"
    kinds = {"public": "Public rescue teams", "professional": "Professional teams", "expert": "Expert team"}
    lines: list[str] = []
    current = None
    for v in views:
        if v.kind != current:
            current = v.kind
            count = sum(1 for x in views if x.kind == v.kind)
            lines.append(f"\n{kinds.get(v.kind, v.kind)} ({count})")
        place = f" [{v.township}, class {v.township_class}]" if v.township else ""
        cmd = f"{v.commander[0]} {v.commander[1] or '-'}" if v.commander else "NO COMMANDER"
        dep = "; ".join(f"{n} {p or '-'}" for n, p in v.deputies) or "NO DEPUTY"
        lines.append(f"  {v.code:<8} {v.name}{place}  members {v.members}")
        lines.append(f"           commander {cmd} | deputy {dep}")
        if v.experts_by_category:
            cats = ", ".join(f"{c} {n}" for c, n in v.experts_by_category.items())
            lines.append(f"           experts {sum(v.experts_by_category.values())}: {cats}")
    total = sum(v.members for v in views)
    lines.append(f"\n{len(views)} teams, {total} members")
    return "\n".join(lines).lstrip("\n")
