"""The command structure in the directory: leaders read from YAML and CSV, checked with line
numbers, imported and re-imported by name, shown by `yihu directory show`."""
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.directory.roster import RosterError, parse_roster_text, read_roster
from gateway.directory.store import import_roster
from gateway.storage import Database
from gateway.storage.schema import leaders

EXAMPLES = Path(__file__).resolve().parent.parent / "deploy" / "examples"
TEAM = """teams:
  - code: PUB-01
    name: 县综合应急救援队
    kind: public
    members:
      - {name: 王一, role: commander, phones: ["+44 7700 900901"]}
      - {name: 李二, role: deputy, phones: ["+44 7700 900902"]}
"""


@pytest.fixture
def db(migrated_url):
    d = Database(None, migrated_url)
    yield d
    d.engine.dispose()


@pytest.mark.parametrize("name", ["roster.yaml", "roster.csv"])
def test_the_example_roster_has_the_command_structure(name):
    rows = read_roster(EXAMPLES / name).leaders
    roles = [r.role for r in rows]
    assert roles.count("commander_in_chief") == 1 and roles.count("deputy_commander") == 2
    assert roles.count("office_director") == 1 and roles.count("county_leader") == 3
    assert all(r.phone.startswith("+447700900") for r in rows)        # the drama range, like the rest


def test_bad_leaders_are_refused_with_their_lines():
    text = TEAM + """leaders:
  - {name: 林总, role: commander_in_chief, phone: "+44 7700 900911"}
  - {name: 许副, role: mayor, phone: "+44 7700 900912"}
  - {name: 周主任, role: office_director, phone: "+44 7700 900901"}
  - {name: 林总, role: county_leader, phone: "+44 7700 900913"}
  - {name: 陈书记, role: county_leader, phone: "12345"}
"""
    with pytest.raises(RosterError) as e:
        parse_roster_text(text, "yaml", "r.yaml")
    problems = e.value.lines()
    assert any(p.startswith("r.yaml:10:") and "role 'mayor'" in p for p in problems)
    assert any(p.startswith("r.yaml:11:") and "+447700900901 is a duplicate (already 王一" in p for p in problems)
    assert any(p.startswith("r.yaml:12:") and "listed twice" in p for p in problems)
    assert any(p.startswith("r.yaml:13:") and "leader 陈书记" in p and "12345" in p for p in problems)


def test_reimport_matches_by_name_and_releases_who_left(db):
    first = TEAM + """leaders:
  - {name: 林总, role: commander_in_chief, title: 县长, phone: "+44 7700 900911"}
  - {name: 陈书记, role: county_leader, phone: "+44 7700 900914"}
"""
    db.run_sync(import_roster, parse_roster_text(first, "yaml", "a"), source="a", actor="test")
    ids = dict(db.run_sync(lambda c: c.execute(select(leaders.c.name, leaders.c.id)).all()))
    second = TEAM + """leaders:
  - {name: 林总, role: commander_in_chief, title: 县长, phone: "+44 7700 900915"}
"""
    summary = db.run_sync(import_roster, parse_roster_text(second, "yaml", "b"), source="b", actor="test")
    assert summary.leaders == 1
    rows = {r.name: r for r in db.run_sync(lambda c: c.execute(select(leaders)).all())}
    assert rows["林总"].id == ids["林总"] and rows["林总"].e164 == "+447700900915" and rows["林总"].active
    assert not rows["陈书记"].active and rows["陈书记"].e164 is None
    # A file that says nothing of leaders leaves them as they are.
    db.run_sync(import_roster, parse_roster_text(TEAM, "yaml", "c"), source="c", actor="test")
    assert db.run_sync(lambda c: c.execute(select(leaders.c.active).where(leaders.c.name == "林总")).scalar())


def test_directory_show_lists_the_leaders(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.sqlite'}"
    base = [sys.executable, "-m", "gateway.cli", "directory"]
    r = subprocess.run(base + ["import", str(EXAMPLES / "roster.csv"), "--database-url", url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "; 7 leaders" in r.stdout, r.stderr
    r = subprocess.run(base + ["show", "--database-url", url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Command structure (7)" in r.stdout
    lines = r.stdout.split("Command structure (7)")[1].strip().splitlines()
    assert lines[0].split()[:2] == ["总指挥", "石军"] and "+447700900164" in lines[0]
    assert [ln.split()[0] for ln in lines] == ["总指挥", "副总指挥", "副总指挥", "办公室主任", "县领导", "县领导", "县领导"]
