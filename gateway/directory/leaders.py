"""The roster's command structure (指挥体系): the leaders the center informs, not a team.

Kept apart from the teams' parsing on purpose (other changes to the roster land there).  YAML::

    leaders:
      - {name: 林国栋, role: commander_in_chief, title: 县长, phone: "+44 7700 900001"}
      - {name: 许文华, role: deputy_commander, title: 常务副县长, phone: "..."}

CSV: a row whose role is a leader's role is a leader (team columns left empty; `specialty` holds
the title).  Roles: commander_in_chief 总指挥, deputy_commander 副总指挥, office_director 办公室主任,
county_leader 县领导 to inform.  A file without leaders leaves the leaders as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update

from gateway.directory.phones import PhoneError, normalise
from gateway.leaders.config import ROLE_WORD, ROLES
from gateway.storage.schema import leaders


@dataclass
class LeaderRow:
    line: int
    name: str
    role: str
    phone: str
    title: str | None = None


def leader_row(raw: dict, line: int, problems) -> LeaderRow | None:
    name = str(raw.get("name") or "").strip()
    role = str(raw.get("role") or "").strip()
    phone_text = raw.get("phone") or raw.get("phones") or ""
    if isinstance(phone_text, list):
        phone_text = phone_text[0] if phone_text else ""
    phone_text = str(phone_text).split(";")[0].strip()
    ok = True
    if not name:
        problems.add(line, "leader: name is missing")
        ok = False
    if role not in ROLES:
        problems.add(line, f"leader {name or '?'}: role {role!r} is not one of {', '.join(ROLES)}")
        ok = False
    try:
        phone = normalise(phone_text)
    except PhoneError as e:
        problems.add(line, f"leader {name or '?'}: {e}")
        ok = False
    title = str(raw.get("title") or raw.get("specialty") or "").strip() or None
    return LeaderRow(line, name, role, phone, title) if ok else None


def parse_yaml_leaders(doc: dict, problems) -> list[LeaderRow] | None:
    if "leaders" not in doc:
        return None
    out = []
    for raw in doc["leaders"] or []:
        if not isinstance(raw, dict):
            problems.add(1, f"a leader must be a mapping, got {raw!r}")
            continue
        row = leader_row(raw, raw["__line__"], problems)
        if row:
            out.append(row)
    return out


def check_leaders(rows: list[LeaderRow] | None, member_phones: dict, problems) -> None:
    """Names identify leaders on re-import; a phone belongs to one person in the whole file."""
    names: dict[str, int] = {}
    phones = dict(member_phones)      # phone -> (line, name)
    for r in rows or []:
        if r.name in names:
            problems.add(r.line, f"leader {r.name}: listed twice (also on line {names[r.name]})")
        names.setdefault(r.name, r.line)
        if r.phone in phones:
            problems.add(r.line, f"leader {r.name}: phone {r.phone} is a duplicate (already {phones[r.phone][1]} "
                                 f"on line {phones[r.phone][0]})")
        phones.setdefault(r.phone, (r.line, r.name))
    if rows and not any(r.role == "commander_in_chief" for r in rows):
        problems.add(rows[0].line, "leaders: no commander_in_chief (总指挥)")


def import_leaders(conn, rows: list[LeaderRow], now: datetime) -> tuple[int, int]:
    """Match by name; those no longer listed are kept inactive, their phones released.
    Returns (listed, deactivated)."""
    existing = {r.name: r.id for r in conn.execute(select(leaders.c.name, leaders.c.id))}
    listed = {r.name for r in rows}
    gone = [i for n, i in existing.items() if n not in listed]
    deactivated = conn.execute(update(leaders).where(leaders.c.id.in_(gone), leaders.c.active.is_(True))
                               .values(active=False, e164=None)).rowcount if gone else 0
    for r in rows:
        values = dict(role=r.role, title=r.title, e164=r.phone, active=True)
        if r.name in existing:
            conn.execute(update(leaders).where(leaders.c.id == existing[r.name]).values(**values))
        else:
            conn.execute(insert(leaders).values(name=r.name, created_at=now, **values))
    return len(rows), deactivated


def format_leaders(conn) -> str:
    rows = conn.execute(select(leaders).where(leaders.c.active.is_(True))).all()
    if not rows:
        return "Command structure: none in the directory (add `leaders:` to the roster)"
    order = {r: i for i, r in enumerate(ROLES)}
    lines = [f"Command structure ({len(rows)})"]
    for r in sorted(rows, key=lambda r: (order.get(r.role, 9), r.id)):
        lines.append(f"  {ROLE_WORD.get(r.role, r.role):<6} {r.name} {r.title or ''}  {r.e164}  ({r.role})")
    return "\n".join(lines)
