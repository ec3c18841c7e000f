"""`yihu order proposals|confirm` and `yihu hotline nuisance|caller|stats --month`, without a
reactor, on a migrated database."""
import argparse
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import create_engine, func, insert, select

from gateway.cap.config import CapRule, CapSection
from gateway.cap.store import take_alert_tx
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.escalation.config import EscalationConfig
from gateway.hotline.callers import HotlineSection
from gateway.hotline.cli import add_hotline_commands
from gateway.orders.cli import add_order_commands
from gateway.storage.schema import audit_log, hotline_calls, orders

HERE = Path(__file__).resolve().parent
ROSTER = HERE.parent / "deploy" / "examples" / "roster.yaml"


def run(url, *argv):
    ap = argparse.ArgumentParser(prog="yihu")
    sub = ap.add_subparsers(dest="command", required=True)
    add_order_commands(sub)
    add_hotline_commands(sub, None)
    args = ap.parse_args(list(argv))
    args.database_url = url
    args.config = SimpleNamespace(escalation=EscalationConfig(), hotline=HotlineSection())
    return args.func(args)


def test_confirm_a_proposal_from_the_command_line(migrated_url, capsys):
    eng = create_engine(migrated_url)
    cfg = CapSection(rules=[CapRule(name="暴雨", event=["暴雨"], target="township:*", confirm=True)])
    with eng.begin() as c:
        import_roster(c, read_roster(ROSTER), source="t", actor="test")
        out = take_alert_tx(c, (HERE / "cap" / "zh_rainstorm_alert.xml").read_bytes(), "inbox:a.xml",
                            datetime.now(timezone.utc), cfg, EscalationConfig(), random.Random(1))
    assert out.action == "proposal"
    assert run(migrated_url, "order", "proposals") == 0
    listed = capsys.readouterr().out
    assert f"#{out.proposal_id}" in listed and "township:田市镇,白塔镇" in listed
    assert run(migrated_url, "order", "confirm", str(out.proposal_id), "--by", "值班员王") == 0
    said = capsys.readouterr().out
    assert "confirmed: order" in said and "2 teams" in said
    assert run(migrated_url, "order", "confirm", str(out.proposal_id), "--by", "值班员李") == 0
    assert "was already confirmed" in capsys.readouterr().out
    assert run(migrated_url, "order", "confirm", "999") == 2
    assert "no proposal 999" in capsys.readouterr().err
    with eng.begin() as c:
        assert c.execute(select(func.count()).select_from(orders)).scalar() == 1
        assert c.execute(select(audit_log.c.actor).where(audit_log.c.action == "proposal.confirmed")).scalar() \
            == "cli:值班员王"
    eng.dispose()


def test_nuisance_caller_and_month_figures_from_the_command_line(migrated_url, capsys):
    eng = create_engine(migrated_url)
    with eng.begin() as c:
        at = datetime.now(timezone.utc) - timedelta(hours=2)
        c.execute(insert(hotline_calls).values(call_id="c1", line="119", caller="13905761111", arrived_at=at,
                                               outcome="abandoned_queue", valid=False, category="prank",
                                               updated_at=at))
    eng.dispose()
    assert run(migrated_url, "hotline", "nuisance", "add", "13905761111", "--reason", "谎报", "--by", "王",
               "--days", "7", "--notice") == 0
    assert "calls still go to the call-takers" in capsys.readouterr().out
    assert run(migrated_url, "hotline", "nuisance", "list") == 0
    assert "13905761111" in capsys.readouterr().out
    assert run(migrated_url, "hotline", "caller", "13905761111") == 0
    out = capsys.readouterr().out
    assert "1 call(s) in 24 h" in out and "on the nuisance list: 谎报" in out
    assert "line 119 abandoned_queue" in out and "invalid: prank 1" in out
    assert run(migrated_url, "hotline", "nuisance", "remove", "13905761111", "--by", "李") == 0
    assert run(migrated_url, "hotline", "nuisance", "remove", "13905761111", "--by", "李") == 2
    capsys.readouterr()
    assert run(migrated_url, "hotline", "stats", "--month", "2026-06") == 0
    assert "valid%" in capsys.readouterr().out
    assert run(migrated_url, "hotline", "stats", "--month", "June") == 2
