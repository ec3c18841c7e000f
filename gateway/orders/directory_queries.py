"""The directory questions the order domain asks (tables filled by the directory importer).

All functions take a SQLAlchemy Connection: they run inside a Database.run unit of work.

The roster decides who is called: a team or member the last import left out (inactive) is never
targeted, reminded or escalated to, and a reply from its old phone is a stranger's.  The import
releases those phones too; the `active` filters here hold even for rows written before it did.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, select

from gateway.storage.schema import duty_roster, member_phones, members, teams

COMMAND_ROLES = ("commander", "deputy")


@dataclass(frozen=True)
class Member:
    id: int
    team_id: int
    name: str
    role: str
    phone: str
    team_code: str | None = None     # filled by member_by_phone (one query for the feedback path)
    team_name: str | None = None


@dataclass(frozen=True)
class Team:
    id: int
    code: str
    name: str
    kind: str
    township: str | None


@dataclass(frozen=True)
class Supervisor:
    name: str
    phone: str


def member_by_phone(conn, phone: str) -> Member | None:
    row = conn.execute(
        select(members.c.id, members.c.team_id, members.c.name, members.c.role, member_phones.c.e164,
               teams.c.code, teams.c.name)
        .join(member_phones, member_phones.c.member_id == members.c.id)
        .join(teams, teams.c.id == members.c.team_id)
        .where(member_phones.c.e164 == phone, members.c.active.is_(True), teams.c.active.is_(True))).first()
    return Member(*row) if row else None


def team_commanders(conn, team_ids) -> dict[int, list[Member]]:
    """Commanders first, then deputies, each phone in its rank order."""
    out: dict[int, list[Member]] = {t: [] for t in team_ids}
    if not out:
        return out
    rows = conn.execute(
        select(members.c.id, members.c.team_id, members.c.name, members.c.role, member_phones.c.e164)
        .join(member_phones, member_phones.c.member_id == members.c.id)
        .join(teams, teams.c.id == members.c.team_id)
        .where(members.c.team_id.in_(list(out)), members.c.role.in_(COMMAND_ROLES),
               members.c.active.is_(True), teams.c.active.is_(True))
        .order_by(members.c.team_id, members.c.role, members.c.id, member_phones.c.rank,
                  member_phones.c.id)).all()
    for r in rows:      # "commander" sorts before "deputy"
        out[r.team_id].append(Member(*r))
    return out


def first_phone(contacts: list[Member], role: str) -> Member | None:
    return next((m for m in contacts if m.role == role), None)


def _team(r) -> Team:
    return Team(r.id, r.code, r.name, r.kind, r.township)


def teams_by_target(conn, how: str, values: tuple[str, ...] = ()) -> list[Team]:
    """how: all / kind (public, professional, expert) / township / teams (team codes)."""
    q = (select(teams.c.id, teams.c.code, teams.c.name, teams.c.kind, teams.c.township, teams.c.active)
         .order_by(teams.c.code))
    if how == "all":
        pass
    elif how == "kind":
        q = q.where(teams.c.kind.in_(values))
    elif how == "township":
        q = q.where(teams.c.township.in_(values))
    elif how == "teams":
        q = q.where(teams.c.code.in_(values))
    else:
        raise ValueError(f"unknown target {how!r}")
    rows = conn.execute(q).all()
    if how == "teams":
        missing = set(values) - {r.code for r in rows}
        if missing:
            raise LookupError(f"no such team: {', '.join(sorted(missing))}")
        removed = sorted(r.code for r in rows if not r.active)
        if removed:
            raise LookupError(f"team {', '.join(removed)} is no longer on the roster (inactive)")
    return [_team(r) for r in rows if r.active]


def teams_by_id(conn, ids) -> dict[int, Team]:
    rows = conn.execute(select(teams.c.id, teams.c.code, teams.c.name, teams.c.kind, teams.c.township)
                        .where(teams.c.id.in_(list(ids))))
    return {r.id: _team(r) for r in rows}


def duty_supervisor(conn, at: datetime) -> Supervisor | None:
    """Whoever is on duty at `at`; the latest-starting shift wins where shifts overlap."""
    row = conn.execute(select(duty_roster.c.name, duty_roster.c.e164)
                       .where(and_(duty_roster.c.starts_at <= at, duty_roster.c.ends_at > at))
                       .order_by(duty_roster.c.starts_at.desc(), duty_roster.c.id.desc())).first()
    return Supervisor(row.name, row.e164) if row else None
