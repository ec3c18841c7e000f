"""Fail fast, report truthfully: a gateway that cannot start a part stops with one line naming it
and exit status 2 (systemd starts it again); /health is 503 while an enabled part is down."""
import json
import socket
import subprocess
import sys
import time

import pytest
import pytest_twisted
import treq
from sqlalchemy import create_engine, text
from twisted.internet import defer, reactor

from gateway.config import load_config
from gateway.service import PartFailed
from gateway.wiring import build_service


def _busy_port():
    """A port that is in use: a listening socket the test holds."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


def _run(tmp_path, config_text, *extra):
    """Run `yihu run`; (exit status, stderr lines, seconds it took)."""
    cfg = tmp_path / "yihu.toml"
    cfg.write_text(config_text, encoding="utf-8")
    t0 = time.monotonic()
    with (tmp_path / "out.log").open("w") as out, (tmp_path / "err.log").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg), *extra],
                                stdout=out, stderr=err)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    took = time.monotonic() - t0
    return proc.returncode, (tmp_path / "err.log").read_text().strip().splitlines(), took


LIVE = '[gateway]\nmode = "live"\ndata_dir = "data"\n[ami]\nenabled = false\n'


@pytest.mark.parametrize("which", ["http", "fastagi"])
def test_a_port_in_use_ends_the_gateway_with_one_line_and_status_2(tmp_path, which):
    sock, busy = _busy_port()
    try:
        if which == "http":
            conf = LIVE + f"[http]\nport = {busy}\n[ivr]\nenabled = false\n"
        else:
            conf = LIVE + f"[http]\nport = 0\n[ivr]\nport = {busy}\n"
        status, lines, took = _run(tmp_path, conf)
    finally:
        sock.close()
    assert status == 2, lines
    assert lines == [f"yihu: cannot start: {which}: cannot listen on 127.0.0.1:{busy} (Address already in use)"]
    # the interpreter's start-up included; the gateway itself stops at once
    assert took < 5, took


def test_a_part_that_raises_at_start_ends_the_gateway_naming_it(tmp_path):
    from gateway.storage.migrate import upgrade
    url = f"sqlite:///{tmp_path / 'data' / 'yihu.sqlite'}"
    (tmp_path / "data").mkdir()
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:        # the escalation engine's table is gone: it cannot rebuild its timers
        conn.execute(text("DROP TABLE escalation_steps"))
    engine.dispose()
    status, lines, took = _run(tmp_path, LIVE + "[http]\nport = 0\n[ivr]\nenabled = false\n")
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith("yihu: cannot start: escalation: OperationalError"), lines
    assert "escalation_steps" in lines[0]
    assert took < 10


def test_a_database_that_cannot_be_migrated_ends_the_gateway(tmp_path):
    from gateway.storage.migrate import upgrade
    url = f"sqlite:///{tmp_path / 'data' / 'yihu.sqlite'}"
    (tmp_path / "data").mkdir()
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:        # written by a newer Yihu: this one does not know its schema
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    status, lines, _ = _run(tmp_path, LIVE + "[http]\nport = 0\n")
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith(f"yihu: database cannot be migrated: {url}"), lines
    assert "0999" in lines[0]


# --- in process: the part named, /health 503 --------------------------------------------------

def _config(url, **sections):
    base = {"gateway": {"database_url": url}, "http": {"port": 0}, "ami": {"enabled": False},
            "ivr": {"enabled": False}}
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return load_config(None, base)


@pytest.fixture
def running(migrated_url):
    """Start a gateway from a config; yields (gateway, health getter)."""
    started = []

    def start(cfg):
        gw = build_service(cfg, reactor)
        gw.startService()
        started.append(gw)

        @defer.inlineCallbacks
        def health():
            port = (yield gw.http_service.listening).getHost().port
            resp = yield treq.get(f"http://127.0.0.1:{port}/health")
            return resp.code, json.loads((yield resp.content()))
        return gw, health
    yield start
    for gw in started:
        pytest_twisted.blockon(gw.stopService())
        gw.database.stop()


def _boom(*a, **kw):
    raise RuntimeError("injected start-up failure")


PARTS = [("gateway.escalation.engine.EscalationEngine.start", "escalation", ""),
         ("gateway.orders.fanout.FanOut.start", "fan-out", ""),
         ("sms.bank.SmsBank.start", "sms-bank", ""),
         # the hotline tracker restores the open calls when this node takes the lease of the AMI events
         ("gateway.hotline.service.HotlineService.restore", "lease ami-events:127.0.0.1:{port}",
          "the hotline tracker and alerts: ")]


@pytest.mark.parametrize("target, part, prefix", PARTS)
@pytest_twisted.inlineCallbacks
def test_each_part_that_fails_to_start_is_named_and_turns_health_red(running, migrated_url, monkeypatch,
                                                                     target, part, prefix):
    monkeypatch.setattr(target, _boom)
    sock, port = _busy_port()
    sock.close()                          # an Asterisk nobody answers at: the lease is taken all the same
    part = part.format(port=port)
    gw, health = running(_config(migrated_url, ami={"enabled": True, "port": port}))
    with pytest.raises(PartFailed) as e:
        yield gw.started
    detail = f"RuntimeError: {prefix}injected start-up failure"
    assert e.value.part == part and str(e.value) == f"{part}: {detail}"
    code, body = yield health()
    assert code == 503 and body["status"] == "down"
    assert body["checks"][part] == {"ok": False, "state": "failed", "detail": detail}


@pytest_twisted.inlineCallbacks
def test_health_lists_every_part(running, migrated_url):
    gw, health = running(_config(migrated_url))
    yield gw.started
    code, body = yield health()
    assert code == 200 and body["status"] == "ok", body
    for part in ("database", "http", "sms", "escalation", "fan-out", "hotline", "ami", "fastagi", "webhooks"):
        assert part in body["checks"], part
    assert body["checks"]["ami"]["state"] == "off" and body["checks"]["fastagi"]["state"] == "off"
    assert body["checks"]["sms"]["state"] == "off"        # no sms.ports: SMS is not enabled


@pytest_twisted.inlineCallbacks
def test_zero_usable_modems_is_down(running, migrated_url, tmp_path):
    gw, health = running(_config(migrated_url, sms={"ports": [str(tmp_path / "no-such-modem")]}))
    yield gw.started
    code, body = yield health()
    assert code == 503 and body["checks"]["sms"] == {"ok": False, "state": "down", "detail": "0/1 modems usable"}
    assert body["checks"]["modem no-such-modem"]["ok"] is False


@pytest_twisted.inlineCallbacks
def test_an_unreachable_asterisk_is_down(running, migrated_url):
    sock, port = _busy_port()
    sock.close()                          # nothing listens there now
    gw, health = running(_config(migrated_url, ami={"enabled": True, "port": port}))
    yield gw.started
    code, body = yield health()
    assert code == 503 and body["checks"]["ami"]["ok"] is False


@pytest_twisted.inlineCallbacks
def test_a_webhook_that_fails_is_down(running, migrated_url):
    sock, port = _busy_port()
    sock.close()
    gw, health = running(_config(migrated_url, webhooks={"urls": [f"http://127.0.0.1:{port}/hook"],
                                                         "retry_initial_s": 60.0}))
    yield gw.started
    from gateway.eventlog import record_event
    yield gw.database.run(record_event, "test.event", {})
    for _ in range(250):                 # the log's tail, then a refused loopback connection
        target = next(iter(gw.webhooks.deliveries.values()), None)
        if target is not None and target.last_error:
            break
        yield deferLater(0.02)
    code, body = yield health()
    name = f"webhook http://127.0.0.1:{port}/hook"
    assert code == 503 and body["checks"][name]["ok"] is False and "1 waiting" in body["checks"][name]["detail"]


def deferLater(seconds):
    from twisted.internet.task import deferLater as later
    return later(reactor, seconds, lambda: None)


class _Starting:
    """A gateway whose parts have not all started yet."""

    def __init__(self):
        self.started = defer.Deferred()


def _shutdown_begins(memory_reactor):
    """What a reactor does on SIGTERM: its 'before shutdown' triggers, in the order they came."""
    for fn, args, kw in memory_reactor.triggers.get("before", {}).get("shutdown", []):
        fn(*args, **kw)


def test_a_part_that_fails_to_start_stops_the_gateway_with_one_line():
    from twisted.internet.testing import MemoryReactor
    from gateway.service import stop_on_failure
    mem, lines, gateway = MemoryReactor(), [], _Starting()
    stop_on_failure(gateway, mem, lines.append)
    gateway.started.errback(PartFailed("lease ami-events:pbx", "AMI connection lost before the reply"))
    assert lines == ["lease ami-events:pbx: AMI connection lost before the reply"]


def test_a_stop_while_a_part_is_still_starting_is_a_stop_not_a_part_that_cannot_start():
    """SIGTERM just after the AMI login, while the hotline tracker's resync waits for its answer:
    the stop cuts the resync short, and the gateway ends as stopped (status 0), not as unable to
    start (status 2, which systemd and the operator read as a fault)."""
    from twisted.internet.testing import MemoryReactor
    from gateway.service import stop_on_failure
    mem, lines, gateway = MemoryReactor(), [], _Starting()
    stop_on_failure(gateway, mem, lines.append)
    _shutdown_begins(mem)
    gateway.started.errback(PartFailed("lease ami-events:pbx", "AMI connection lost before the reply"))
    assert lines == []
