"""Reading a roster file (YAML or CSV) into checked rows, every problem with its line number.

The whole file is read and checked before anything is written: a file with any error imports
nothing.  Shapes:

YAML::

    teams:
      - code: PUB-01
        name: 县综合应急救援队
        kind: public            # public / professional / expert
        township: 白塔镇         # township/street sub-teams only
        township_class: 1       # 1-3 where it applies
        min_size: 20
        members:
          - {name: 张三, role: commander, phones: ["+86 138 0000 0000"], specialty: 救援,
             pin: "4821"}      # optional: the feedback line asks for it; quoted (YAML reads 0427 as a number)
    duty_supervisors:
      - {name: 李四, phone: "...", starts_at: 2026-12-01T08:00:00+08:00, ends_at: ...}

CSV (one row per member; phones separated by ';')::

    team_code,team_name,kind,township,township_class,min_size,name,role,specialty,category,phones[,pin]
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from gateway.directory import leaders as leaders_section
from gateway.directory.phones import PhoneError, normalise
from gateway.leaders.config import ROLES as LEADER_ROLES
from gateway.directory.pins import valid_pin

KINDS = ("public", "professional", "expert")
ROLES = ("commander", "deputy", "member", "expert", "liaison")
CSV_COLUMNS = ("team_code", "team_name", "kind", "township", "township_class", "min_size",
               "name", "role", "specialty", "category", "phones", "pin")


@dataclass
class MemberRow:
    line: int
    name: str
    role: str
    phones: list[str]              # E.164, first = the one to use first
    specialty: str | None = None
    category: str | None = None
    pin: str | None = None         # the feedback line asks for it (4 digits); stored hashed


@dataclass
class TeamRow:
    line: int
    code: str
    name: str
    kind: str
    township: str | None = None
    township_class: int | None = None
    min_size: int | None = None
    members: list[MemberRow] = field(default_factory=list)

    def with_role(self, role: str) -> list[MemberRow]:
        return [m for m in self.members if m.role == role]


@dataclass
class SupervisorRow:
    line: int
    name: str
    phone: str
    starts_at: datetime
    ends_at: datetime


@dataclass
class Roster:
    teams: list[TeamRow] = field(default_factory=list)
    supervisors: list[SupervisorRow] | None = None     # None: the file says nothing of them
    leaders: list | None = None                        # gateway/directory/leaders.py; None: not in the file


class RosterError(Exception):
    """The file is refused; `problems` are (line, message) pairs, sorted by line."""

    def __init__(self, source: str, problems: list[tuple[int, str]]):
        self.source = source
        self.problems = sorted(problems, key=lambda p: p[0])
        super().__init__(f"{source}: {len(self.problems)} problem(s)")

    def lines(self) -> list[str]:
        return [f"{self.source}:{line}: {msg}" for line, msg in self.problems]


# --- YAML with line numbers -------------------------------------------------------------------

class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that records, for every mapping, the line it starts on (1-based)."""


def _construct_mapping(loader, node, deep=False):
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Problems:
    def __init__(self):
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, msg: str) -> None:
        self.items.append((line, msg))


def _text(value, line, what, problems, required=True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            problems.add(line, f"{what} is missing")
        return None
    if isinstance(value, (dict, list)):
        problems.add(line, f"{what} must be text, got {type(value).__name__}")
        return None
    return str(value).strip()


def _int(value, line, what, problems) -> int | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(str(value).strip())
    except ValueError:
        problems.add(line, f"{what} must be a whole number, got {value!r}")
        return None


def _time(value, line, what, problems) -> datetime | None:
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).strip())
        except ValueError:
            problems.add(line, f"{what} must be a date-time like 2026-12-01T08:00+08:00, got {value!r}")
            return None
    if dt.tzinfo is None:
        problems.add(line, f"{what} must give its UTC offset (e.g. +08:00), got {value!r}")
        return None
    return dt


def _member(raw: dict, line: int, team_code: str, problems: _Problems) -> MemberRow | None:
    where = f"team {team_code}: member"
    name = _text(raw.get("name"), line, f"{where} name", problems)
    role = _text(raw.get("role"), line, f"{where} {name or '?'} role", problems)
    if role is not None and role not in ROLES:
        problems.add(line, f"{where} {name}: role must be one of {', '.join(ROLES)}, got {role!r}")
    phones_raw = raw.get("phones", raw.get("phone"))
    if isinstance(phones_raw, str):
        phones_raw = [p for p in phones_raw.replace("|", ";").split(";") if p.strip()]
    if not phones_raw:
        problems.add(line, f"{where} {name}: no phone number")
        phones_raw = []
    phones = []
    for p in phones_raw:
        try:
            phones.append(normalise(str(p)))
        except PhoneError as e:
            problems.add(line, f"{where} {name}: {e}")
    pin = _pin(raw.get("pin"), line, f"{where} {name}", problems)
    extra = set(raw) - {"name", "role", "phones", "phone", "specialty", "category", "pin", "__line__"}
    if extra:
        problems.add(line, f"{where} {name}: unknown field(s) {', '.join(sorted(extra))}")
    if name is None or role is None:
        return None
    return MemberRow(line=line, name=name, role=role, phones=phones,
                     specialty=_text(raw.get("specialty"), line, "specialty", problems, required=False),
                     category=_text(raw.get("category"), line, "category", problems, required=False), pin=pin)


def _pin(value, line, who, problems) -> str | None:
    """Text of exactly 4 digits; the value itself is never echoed in a problem (it is a secret)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        # YAML reads 0427 as a number (octal even): only a quoted PIN keeps its digits.
        problems.add(line, f"{who}: pin must be quoted text of 4 digits (pin: \"1234\"), got a {type(value).__name__}")
        return None
    if not valid_pin(value.strip()):
        problems.add(line, f"{who}: pin must be exactly 4 digits")
        return None
    return value.strip()


def _team(raw: dict, line: int, problems: _Problems) -> TeamRow | None:
    code = _text(raw.get("code"), line, "team code", problems)
    where = f"team {code or '?'}"
    name = _text(raw.get("name"), line, f"{where}: name", problems)
    kind = _text(raw.get("kind"), line, f"{where}: kind", problems)
    if kind is not None and kind not in KINDS:
        problems.add(line, f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    tclass = _int(raw.get("township_class"), line, f"{where}: township_class", problems)
    if tclass is not None and not 1 <= tclass <= 3:
        problems.add(line, f"{where}: township_class must be 1, 2 or 3, got {tclass}")
    min_size = _int(raw.get("min_size"), line, f"{where}: min_size", problems)
    extra = set(raw) - {"code", "name", "kind", "township", "township_class", "min_size", "members", "__line__"}
    if extra:
        problems.add(line, f"{where}: unknown field(s) {', '.join(sorted(extra))}")
    if code is None or name is None or kind is None:
        return None
    return TeamRow(line=line, code=code, name=name, kind=kind,
                   township=_text(raw.get("township"), line, "township", problems, required=False),
                   township_class=tclass, min_size=min_size)


def parse_yaml(text: str, problems: _Problems) -> Roster:
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problems.add(mark.line + 1 if mark else 1, f"not valid YAML: {getattr(e, 'problem', e)}")
        return Roster()
    if not isinstance(doc, dict) or not isinstance(doc.get("teams"), list):
        problems.add(1, "the file must be a mapping with a list under 'teams'")
        return Roster()
    roster = Roster()
    for raw in doc["teams"]:
        if not isinstance(raw, dict):
            problems.add(1, f"a team must be a mapping, got {raw!r}")
            continue
        team = _team(raw, raw["__line__"], problems)
        members = raw.get("members") or []
        if not isinstance(members, list):
            problems.add(raw["__line__"], "members must be a list")
            members = []
        for m in members:
            if not isinstance(m, dict):
                problems.add(raw["__line__"], f"a member must be a mapping, got {m!r}")
                continue
            member = _member(m, m["__line__"], team.code if team else "?", problems)
            if team and member:
                team.members.append(member)
        if team:
            roster.teams.append(team)
    if "duty_supervisors" in doc:
        roster.supervisors = []
        for raw in doc["duty_supervisors"] or []:
            if not isinstance(raw, dict):
                problems.add(1, f"a duty supervisor must be a mapping, got {raw!r}")
                continue
            roster.supervisors.extend(_supervisor(raw, raw["__line__"], problems))
    roster.leaders = leaders_section.parse_yaml_leaders(doc, problems)
    return roster


def _supervisor(raw: dict, line: int, problems: _Problems) -> list[SupervisorRow]:
    name = _text(raw.get("name"), line, "duty supervisor name", problems)
    phone = None
    try:
        phone = normalise(str(raw.get("phone", "")))
    except PhoneError as e:
        problems.add(line, f"duty supervisor {name}: {e}")
    starts = _time(raw.get("starts_at"), line, f"duty supervisor {name}: starts_at", problems)
    ends = _time(raw.get("ends_at"), line, f"duty supervisor {name}: ends_at", problems)
    if starts and ends and ends <= starts:
        problems.add(line, f"duty supervisor {name}: ends_at must be after starts_at")
    if name and phone and starts and ends:
        return [SupervisorRow(line, name, phone, starts, ends)]
    return []


def parse_csv(text: str, problems: _Problems) -> Roster:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("team_code", "name", "role", "phones") if c not in header]
    if missing:
        problems.add(1, f"CSV header lacks column(s): {', '.join(missing)} (columns: {', '.join(CSV_COLUMNS)})")
        return Roster()
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown:
        problems.add(1, f"CSV header has unknown column(s): {', '.join(unknown)}")
    roster = Roster()
    by_code: dict[str, TeamRow] = {}
    for row in reader:
        line = reader.line_num
        row = {(k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        if None in row or "" in row and row[""]:
            problems.add(line, "more fields than columns")
        if row.get("role") in LEADER_ROLES:        # the command structure, not a team member
            leader = leaders_section.leader_row(row, line, problems)
            roster.leaders = (roster.leaders or []) + ([leader] if leader else [])
            continue
        code = row.get("team_code") or ""
        team = by_code.get(code)
        if team is None:
            team = _team({"code": code, "name": row.get("team_name"), "kind": row.get("kind"),
                          "township": row.get("township"), "township_class": row.get("township_class"),
                          "min_size": row.get("min_size")}, line, problems)
            if team is None:
                continue
            by_code[code] = team
            roster.teams.append(team)
        else:
            for col, val in (("team_name", team.name), ("kind", team.kind)):
                if row.get(col) and row[col] != val:
                    problems.add(line, f"team {code}: {col} {row[col]!r} differs from line {team.line} ({val!r})")
        member = _member({"name": row.get("name"), "role": row.get("role"), "phones": row.get("phones"),
                          "specialty": row.get("specialty"), "category": row.get("category"),
                          "pin": row.get("pin")},
                         line, code, problems)
        if member:
            team.members.append(member)
    return roster


# --- the whole-file checks --------------------------------------------------------------------

def check(roster: Roster, problems: _Problems) -> None:
    seen_codes: dict[str, int] = {}
    seen_phones: dict[str, tuple[int, str]] = {}
    for team in roster.teams:
        if team.code in seen_codes:
            problems.add(team.line, f"team {team.code}: duplicate team code (also on line {seen_codes[team.code]})")
        seen_codes.setdefault(team.code, team.line)
        commanders, deputies = team.with_role("commander"), team.with_role("deputy")
        if not commanders:
            problems.add(team.line, f"team {team.code}: no commander")
        elif len(commanders) > 1:
            problems.add(commanders[1].line, f"team {team.code}: more than one commander "
                                             f"({', '.join(m.name for m in commanders)})")
        if not deputies:
            problems.add(team.line, f"team {team.code}: no deputy commander")
        names: dict[str, int] = {}
        for m in team.members:
            if m.name in names:
                problems.add(m.line, f"team {team.code}: two members named {m.name} (also on line {names[m.name]}); "
                                     "names identify members on re-import, so tell them apart (e.g. 张伟(大))")
            names.setdefault(m.name, m.line)
        if team.kind == "expert":
            for m in team.members:
                if m.role in ("expert", "commander", "deputy") and not m.category:
                    problems.add(m.line, f"team {team.code}: expert {m.name} has no category")
        for m in team.members:
            for p in m.phones:
                if p in seen_phones:
                    other_line, other = seen_phones[p]
                    problems.add(m.line, f"team {team.code}: phone {p} of {m.name} is a duplicate "
                                         f"(already {other} on line {other_line})")
                else:
                    seen_phones[p] = (m.line, m.name)
    leaders_section.check_leaders(roster.leaders, seen_phones, problems)


def read_roster(path: str | Path) -> Roster:
    """Parse and check a roster file; raise RosterError with every problem found."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise RosterError(str(p), [(0, f"cannot read: {e.strerror}")]) from None
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise RosterError(str(p), [(line, "not UTF-8 text")]) from None
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".csv"):
        raise RosterError(str(p), [(0, "unknown file type: use .yaml, .yml or .csv")])
    return parse_roster_text(text, "csv" if suffix == ".csv" else "yaml", str(p))


def parse_roster_text(text: str, fmt: str, source: str) -> Roster:
    """A roster given as text (yaml or csv), checked as a file is; RosterError names `source`."""
    problems = _Problems()
    roster = parse_csv(text, problems) if fmt == "csv" else parse_yaml(text, problems)
    check(roster, problems)
    if problems.items:
        raise RosterError(source, problems.items)
    return roster
