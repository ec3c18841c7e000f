"""The directory: the example roster, and refusal of bad rosters with line numbers, all or nothing."""
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.directory.phones import PhoneError, normalise
from gateway.directory.roster import RosterError, read_roster
from gateway.directory.store import import_roster, list_teams
from gateway.storage import Database
from gateway.storage.schema import audit_log, duty_roster, member_phones, members, teams

EXAMPLES = Path(__file__).resolve().parent.parent / "deploy" / "examples"


@pytest.fixture
def db(migrated_url):
    d = Database(None, migrated_url)
    yield d
    d.engine.dispose()


def snapshot(db):
    def read(conn):
        return (sorted(tuple(r) for r in conn.execute(select(teams.c.code, teams.c.name, teams.c.active))),
                sorted(tuple(r) for r in conn.execute(select(members.c.team_id, members.c.name, members.c.role))),
                sorted(r[0] for r in conn.execute(select(member_phones.c.e164))),
                conn.execute(select(func.count()).select_from(duty_roster)).scalar_one())
    return db.run_sync(read)


@pytest.mark.parametrize("name", ["roster.yaml", "roster.csv"])
def test_example_roster_has_the_centers_structure(db, name):
    summary = db.run_sync(import_roster, read_roster(EXAMPLES / name), source=name, actor="test")
    views = db.run_sync(list_teams)
    assert len(views) == 40
    kinds = [v.kind for v in views]
    assert kinds.count("public") == 23 and kinds.count("professional") == 16 and kinds.count("expert") == 1
    townships = [v for v in views if v.township]
    assert len(townships) == 20 and all(v.township_class in (1, 2, 3) for v in townships)
    for v in views:
        assert v.commander is not None and v.commander[1], f"{v.code} lacks a reachable commander"
        assert v.deputies and v.deputies[0][1], f"{v.code} lacks a reachable deputy"
    (expert,) = [v for v in views if v.kind == "expert"]
    assert sum(expert.experts_by_category.values()) == 33
    assert len(expert.experts_by_category) == 5
    assert summary.experts == 33 and summary.expert_categories == 5


def test_example_phones_are_fictional():
    roster = read_roster(EXAMPLES / "roster.yaml")
    phones = [p for t in roster.teams for m in t.members for p in m.phones]
    assert phones and all(p.startswith("+447700900") for p in phones)


def test_reimport_keeps_ids_and_deactivates_who_left(db, tmp_path):
    db.run_sync(import_roster, read_roster(EXAMPLES / "roster.yaml"), source="a", actor="test")
    ids = dict(db.run_sync(lambda c: c.execute(select(members.c.name, members.c.id)).all()))
    text = (EXAMPLES / "roster.yaml").read_text(encoding="utf-8")
    liaison = next(line for line in text.splitlines() if "role: liaison" in line)
    smaller = tmp_path / "r.yaml"
    smaller.write_text(text.replace(liaison + "\n", ""), encoding="utf-8")
    summary = db.run_sync(import_roster, read_roster(smaller), source="b", actor="test")
    assert summary.deactivated_members == 1
    after = dict(db.run_sync(lambda c: c.execute(select(members.c.name, members.c.id)).all()))
    assert after == ids
    assert db.run_sync(lambda c: c.execute(select(func.count()).select_from(audit_log)).scalar_one()) == 2


BAD = {
    "duplicate_phone": ("""teams:
  - code: A
    name: Team A
    kind: public
    members:
      - {name: 甲, role: commander, phones: ["13800138000"]}
      - {name: 乙, role: deputy, phones: ["+86 138 0013 8000"]}
""", [(7, "phone +8613800138000 of 乙 is a duplicate (already 甲 on line 6)")]),
    "invalid_number": ("""teams:
  - code: A
    name: Team A
    kind: public
    members:
      - {name: 甲, role: commander, phones: ["12345"]}
      - {name: 乙, role: deputy, phones: ["13800138001"]}
""", [(6, "'12345' is not a valid number")]),
    "no_commander": ("""teams:
  - code: A
    name: Team A
    kind: public
    members:
      - {name: 甲, role: deputy, phones: ["13800138002"]}
  - code: B
    name: Team B
    kind: professional
    members:
      - {name: 丙, role: commander, phones: ["13800138003"]}
      - {name: 丁, role: deputy, phones: ["13800138004"]}
""", [(2, "team A: no commander")]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_roster_is_refused_with_line_numbers_and_changes_nothing(db, tmp_path, case):
    db.run_sync(import_roster, read_roster(EXAMPLES / "roster.yaml"), source="good", actor="test")
    before = snapshot(db)
    body, expected = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(RosterError) as e:
        read_roster(path)
    got = e.value.problems
    for line, fragment in expected:
        assert any(l == line and fragment in msg for l, msg in got), got
    # The CLI refuses it too, with the same lines, exit 2, and the database stays as it was.
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "directory", "import", str(path),
                        "--database-url", db.url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"bad.yaml:{expected[0][0]}:" in r.stderr and "nothing was imported" in r.stderr
    assert "Traceback" not in r.stderr
    assert snapshot(db) == before


def test_csv_roster_problems_carry_csv_line_numbers(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("team_code,team_name,kind,name,role,phones\n"
                    "A,Team A,public,甲,commander,13800138000\n"
                    "A,Team A,public,乙,deputy,not-a-number\n"
                    "B,Team B,professional,丙,deputy,13800138000\n", encoding="utf-8")
    with pytest.raises(RosterError) as e:
        read_roster(path)
    lines = e.value.lines()
    assert any(":3:" in l and "not-a-number" in l for l in lines), lines
    assert any(":4:" in l and "duplicate" in l for l in lines), lines
    assert any(":4:" in l and "team B: no commander" in l for l in lines), lines


def test_a_phone_of_a_team_left_out_of_the_file_is_released_and_may_move(db, tmp_path):
    db.run_sync(import_roster, read_roster(EXAMPLES / "roster.yaml"), source="good", actor="test")
    moved = db.run_sync(lambda c: c.execute(select(member_phones.c.e164).order_by(member_phones.c.id)).first()[0])
    path = tmp_path / "new.yaml"
    path.write_text(f"""teams:
  - code: NEW
    name: New team
    kind: public
    members:
      - {{name: 新甲, role: commander, phones: ["{moved}"]}}
      - {{name: 新乙, role: deputy, phones: ["+44 7700 900999"]}}
""", encoding="utf-8")
    summary = db.run_sync(import_roster, read_roster(path), source=str(path), actor="test")
    assert summary.deactivated_teams == 40
    teams_, members_, phones, _ = snapshot(db)
    assert [t for t in teams_ if t[2]] == [("NEW", "New team", True)]
    assert phones == sorted([moved, "+447700900999"])      # every other phone released


@pytest.mark.parametrize("raw, e164", [("138 0013 8000", "+8613800138000"), ("+86-138-0013-8000", "+8613800138000"),
                                       ("0571 8765 4321", "+8657187654321"), ("+44 7700 900123", "+447700900123")])
def test_numbers_are_normalised_to_e164(raw, e164):
    assert normalise(raw) == e164


@pytest.mark.parametrize("raw", ["", "12345", "138001380001234", "电话"])
def test_invalid_numbers_are_refused(raw):
    with pytest.raises(PhoneError):
        normalise(raw)


def test_directory_show_prints_commanders(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.sqlite'}"
    base = [sys.executable, "-m", "gateway.cli", "directory"]
    r = subprocess.run(base + ["import", str(EXAMPLES / "roster.yaml"), "--database-url", url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "imported 40 teams" in r.stdout and "33 experts in 5 categories" in r.stdout
    r = subprocess.run(base + ["show", "--database-url", url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "Public rescue teams (23)" in r.stdout and "Professional teams (16)" in r.stdout
    assert "县综合应急救援队" in r.stdout and "commander 王建国 +447700900000" in r.stdout
    assert "NO COMMANDER" not in r.stdout and "40 teams" in r.stdout
