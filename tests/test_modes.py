"""Live or drill, never confused: which mode runs, conflicting configurations refused, and a drill
that says so everywhere (events, webhooks, /health, the board, its own SQLite file)."""
import json
import subprocess
import sys

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from gateway.config import ConfigError, load_config


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def write(tmp_path, text, name="yihu.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# --- which mode runs ------------------------------------------------------------------------

def test_nothing_configured_is_the_drill_in_its_own_sqlite_file(tmp_path):
    cfg = load_config(None)
    assert cfg.mode == "drill" and "no configuration file and no database URL" in cfg.mode_reason
    assert cfg.database_url.endswith("/var/drill.sqlite")


def test_a_database_url_without_a_file_is_live():
    cfg = load_config(None, {"gateway": {"database_url": "postgresql+psycopg://yihu@db/yihu"}})
    assert cfg.mode == "live" and not cfg.drill


def test_a_file_that_does_not_say_drill_is_live(tmp_path):
    cfg = load_config(write(tmp_path, '[gateway]\ndata_dir = "state"\n'))
    assert cfg.mode == "live"
    assert cfg.database_url == f"sqlite:///{tmp_path / 'state' / 'yihu.sqlite'}"


@pytest.mark.parametrize("gateway, mode", [('mode = "drill"', "drill"), ('mode = "live"', "live"),
                                           ("embedded = true", "drill"), ("embedded = false", "live")])
def test_the_file_says_which_mode(tmp_path, gateway, mode):
    cfg = load_config(write(tmp_path, f'[gateway]\ndata_dir = "state"\n{gateway}\n'))
    assert cfg.mode == mode
    # the two modes never share a database file
    assert cfg.database_url.endswith("/state/drill.sqlite" if mode == "drill" else "/state/yihu.sqlite")


def test_cli_without_config_but_with_a_database_url_is_live(tmp_path):
    url = f"sqlite:///{tmp_path / 'prod.sqlite'}"
    r = run_cli("check-config", "--database-url", url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "live mode" in r.stdout and "drill" not in r.stdout
    r = run_cli("check-config", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "drill mode" in r.stdout and "drill.sqlite" in r.stdout


@pytest.mark.parametrize("body, expected", [
    ('[gateway]\nmode = "practice"\n', 'gateway.mode: must be "live" or "drill"'),
    ('[gateway]\nmode = "live"\nembedded = true\n', "gateway.embedded = true contradicts gateway.mode = 'live'"),
])
def test_an_unclear_mode_is_refused(tmp_path, body, expected):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, body))
    assert any(expected in p for p in e.value.problems), e.value.problems


# --- drill mode with real hardware: refused, one line per conflict --------------------------

CONFLICTS = [
    ('[sms]\nports = ["/dev/serial/by-id/usb-modem0"]\n', "sms.ports"),
    ('[sms]\nsim_pin = "4321"\n', "sms.sim_pin"),
    ('[ami]\nhost = "10.1.2.3"\n', "ami.host"),
    ('[ami]\nport = 5039\n', "ami.port"),
    ('[ami]\nsecret = "hunter2-secret"\n', "ami.secret"),
]


@pytest.mark.parametrize("section, key", CONFLICTS)
def test_drill_with_real_hardware_is_refused_at_start_and_by_check_config(tmp_path, section, key):
    for gateway in ('mode = "drill"', "embedded = true"):
        p = write(tmp_path, f'[gateway]\n{gateway}\ndata_dir = "state"\n[http]\nport = 0\n{section}')
        for command in ("check-config", "run"):
            r = run_cli(command, "--config", str(p))
            assert r.returncode == 2, r.stderr
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"yihu: config error: {key}: names "), r.stderr
            assert 'gateway.mode is "drill"' in lines[0]
            assert "4321" not in r.stderr and "hunter2" not in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "state").exists()          # refused before anything was created


def test_every_conflict_has_its_own_line(tmp_path):
    p = write(tmp_path, '[gateway]\nmode = "drill"\n[sms]\nports = ["/dev/ttyUSB0"]\nsim_pin = "4321"\n'
                        '[ami]\nhost = "10.1.2.3"\nport = 5039\nsecret = "hunter2"\n')
    r = run_cli("check-config", "--config", str(p))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert sorted(line.split(":")[2].strip() for line in lines) == sorted(k for _, k in CONFLICTS), r.stderr


def test_live_mode_with_real_hardware_is_fine(tmp_path):
    cfg = load_config(write(tmp_path, '[gateway]\nmode = "live"\n' + CONFLICTS[0][0]))
    assert cfg.mode == "live" and list(cfg.sms.ports) == ["/dev/serial/by-id/usb-modem0"]


# --- a drill says so: events, webhooks ------------------------------------------------------

def _order_tx(conn, drill, ref):
    from datetime import datetime, timezone
    from random import Random

    from gateway.escalation.config import EscalationConfig
    from gateway.orders.order import OrderRequest, Target
    from gateway.orders.store import create_order_tx
    req = OrderRequest(ref, "rescue", "集结", Target("teams", ("PUB-01",)), "same_township", created_by="cli:test",
                       drill=drill)
    return create_order_tx(conn, req, datetime(2027, 1, 15, 8, 0, tzinfo=timezone.utc), EscalationConfig(),
                           Random(7)).order_id


def _feedback_tx(conn, order_ids):
    from gateway.eventlog import record_event
    record_event(conn, "hotline.arrived", {"call_id": "1.1"})
    for oid in order_ids:      # as the feedback store records them: the payload says nothing of drills
        record_event(conn, "order.feedback", {"order_id": oid, "status": "received"})


@pytest.mark.parametrize("drill", [True, False])
@pytest_twisted.inlineCallbacks
def test_every_event_and_webhook_payload_carries_the_drill_flag(migrated_url, drill):
    """Drill mode: every event says drill; live mode: only those about a drill order."""
    from adapters.events import EventTail
    from adapters.webhooks import WebhookSection, Webhooks
    from gateway.ami.testing import wait_for
    from gateway.storage import Database
    from tests._orders_rig import seed_directory_tx
    db = Database(reactor, migrated_url, drill=drill)
    db.start()
    clock = Clock()
    tail = EventTail(clock, db)
    posted = []
    hooks = Webhooks(clock, db, tail, WebhookSection(urls=["http://dispatch.example/hook"]),
                     post=lambda url, body, headers: (posted.append(json.loads(body)), defer.succeed(200))[1])
    try:
        yield tail.start()
        yield hooks.start()
        yield db.run(seed_directory_tx, 1)
        drill_order = yield db.run(_order_tx, True, "DRILL-1")      # a drill order, in either mode
        real_order = yield db.run(_order_tx, False, "INC-1")
        yield db.run(_feedback_tx, [drill_order, real_order])
        yield wait_for(reactor, lambda: len(posted) == 5, what="five webhook POSTs")
        flags = [(p["kind"], p["payload"].get("order_id"), p["payload"]["drill"]) for p in posted]
        assert flags == [("order.created", drill_order, True), ("order.created", real_order, drill),
                         ("hotline.arrived", None, drill), ("order.feedback", drill_order, True),
                         ("order.feedback", real_order, drill)]
        assert [e.payload["drill"] for e in tail.since(0)] == [f for _, _, f in flags]      # the stream's too
    finally:
        yield hooks.stop()
        tail.stop()
        db.stop()


@pytest_twisted.inlineCallbacks
def test_live_health_and_board_say_live(migrated_url):
    from gateway.wiring import build_service
    cfg = load_config(None, {"gateway": {"database_url": migrated_url}, "http": {"port": 0},
                             "ami": {"enabled": False}, "ivr": {"enabled": False}})
    gw = build_service(cfg, reactor)
    gw.startService()
    try:
        port = (yield gw.http_service.listening).getHost().port
        yield gw.started
        body = json.loads((yield (yield treq.get(f"http://127.0.0.1:{port}/health")).content()))
        assert body["mode"] == "live"
        page = yield (yield treq.get(f"http://127.0.0.1:{port}/board")).text("utf-8")
        assert "演练" not in page and "class=drill" not in page
    finally:
        yield gw.stopService()
        gw.database.stop()
