"""`yihu order send/show/list/close` on a migrated database, without a reactor."""
import argparse
from types import SimpleNamespace

from sqlalchemy import create_engine, select

from gateway.escalation.config import EscalationConfig
from gateway.orders.cli import add_order_commands
from gateway.storage.schema import escalation_steps, orders
from tests._orders_rig import seed_directory_tx


def run(url, *argv, cfg=None):
    ap = argparse.ArgumentParser(prog="yihu")
    sub = ap.add_subparsers(dest="command", required=True)
    add_order_commands(sub)
    args = ap.parse_args(list(argv))
    args.database_url = url
    args.config = SimpleNamespace(escalation=cfg or EscalationConfig())
    return args.func(args)


def test_send_show_list_close(migrated_url, capsys):
    eng = create_engine(migrated_url)
    with eng.begin() as c:
        seed_directory_tx(c, 2)
    assert run(migrated_url, "order", "send", "--incident", "INC-3", "--kind", "stability", "--text", "聚集事件，速到场",
               "--target", "teams:PUB-01,PUB-02", "--rule", "same_township", "--by", "dispatcher1") == 0
    out = capsys.readouterr().out
    code = out.split()[1]
    assert "2 teams" in out and "县公安局局长" in out
    assert run(migrated_url, "order", "show", code) == 0
    shown = capsys.readouterr().out
    assert f"指令 {code}  INC-3" in shown and "PUB-01" in shown and "PUB-02" in shown and "无回复" in shown
    assert "下一步" in shown and "接收催办短信" in shown
    assert run(migrated_url, "order", "list") == 0
    assert code in capsys.readouterr().out
    assert run(migrated_url, "order", "close", code) == 0
    out = capsys.readouterr().out
    # no gateway ran: the 4 SMS deliveries were never handed on, and are cancelled with the steps
    assert "cancelled: 24 pending escalation steps, 0 SMS segments not yet submitted, 0 call attempts " \
           "not yet placed, 4 deliveries not yet handed on" in out
    with eng.begin() as c:
        assert c.execute(select(orders.c.state)).scalar() == "closed"
        assert set(c.execute(select(escalation_steps.c.state)).scalars()) == {"cancelled"}
    assert run(migrated_url, "order", "show", "9999") == 1
    eng.dispose()


def test_send_refuses_bad_input(migrated_url, capsys):
    assert run(migrated_url, "order", "send", "--incident", "I", "--kind", "rescue", "--text", "t",
               "--target", "region:x", "--rule", "same_township") == 2
    assert run(migrated_url, "order", "send", "--incident", "I", "--kind", "rescue", "--text", "t",
               "--target", "teams:NOPE", "--rule", "same_township") == 2
    assert "no such team: NOPE" in capsys.readouterr().err


def test_send_major(migrated_url, capsys):
    eng = create_engine(migrated_url)
    with eng.begin() as c:
        seed_directory_tx(c, 1)
    assert run(migrated_url, "order", "send", "--incident", "INC-9", "--kind", "rescue", "--text", "山体滑坡",
               "--target", "teams:PUB-01", "--rule", "same_township", "--major") == 0
    out = capsys.readouterr().out
    assert out.startswith("major order ")
    code = out.split()[2]
    assert run(migrated_url, "order", "show", code) == 0
    assert capsys.readouterr().out.startswith(f"【重大】指令 {code}")
    with eng.begin() as c:
        assert c.execute(select(orders.c.major)).scalar() is True
    eng.dispose()
