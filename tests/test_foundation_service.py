"""The running gateway: database work off the reactor thread, /health and /metrics, clean stop."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from gateway.config import load_config
from gateway.wiring import build_service


@pytest_twisted.inlineCallbacks
def test_database_work_never_runs_on_the_reactor_thread(database):
    reactor_thread = threading.get_ident()
    seen = []

    def work(conn):
        seen.append((threading.get_ident(), threading.current_thread().name))
        return conn.exec_driver_sql("SELECT 1").scalar()

    results = yield _gather([database.run(work) for _ in range(20)])
    assert results == [1] * 20
    assert all(ident != reactor_thread for ident, _ in seen)
    # ... nor in the reactor's default pool: only the gateway's own "yihu-db" pool threads.
    assert all(name.startswith("PoolThread-yihu-db-") for _, name in seen), seen
    if database.url.startswith("sqlite"):
        assert len({ident for ident, _ in seen}) == 1


def _gather(ds):
    from twisted.internet.defer import gatherResults
    return gatherResults(ds, consumeErrors=True)


def test_database_refuses_work_on_the_reactor_thread(migrated_url):
    from gateway.storage import Database
    db = Database(reactor, migrated_url)
    db.reactor_thread_id = threading.get_ident()   # pretend this thread is the reactor's
    with pytest.raises(AssertionError):
        db._in_transaction(lambda conn: 1, (), {})
    db.engine.dispose()


@pytest_twisted.inlineCallbacks
def test_health_and_metrics_over_http(migrated_url):
    # Real hardware mode with no modems configured and Asterisk and FastAGI switched off.
    cfg = load_config(None, {"gateway": {"database_url": migrated_url, "embedded": False},
                             "http": {"port": 0}, "ami": {"enabled": False}, "ivr": {"enabled": False}})
    gw = build_service(cfg, reactor)
    gw.startService()
    try:
        port = (yield gw.http_service.listening).getHost().port
        yield gw.started
        resp = yield treq.get(f"http://127.0.0.1:{port}/health")
        body = json.loads((yield resp.content()))
        assert resp.code == 200, body
        assert body["status"] == "ok" and body["checks"]["database"]["ok"] is True
        resp = yield treq.get(f"http://127.0.0.1:{port}/metrics")
        text = (yield resp.text())
        assert resp.code == 200
        for name in ("yihu_build_info", "process_cpu_seconds_total", "yihu_sms_segments_sent_total",
                     "yihu_hotline_calls_total", "yihu_escalation_pending", "yihu_db_query_seconds"):
            assert name in text, name
        # The database going away turns /health red (503) instead of lying.
        gw.database.engine.dispose()
        from sqlalchemy import create_engine
        gw.database.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
        resp = yield treq.get(f"http://127.0.0.1:{port}/health")
        body = json.loads((yield resp.content()))
        assert resp.code == 503 and body["checks"]["database"]["ok"] is False
    finally:
        yield gw.stopService()
        gw.database.stop()


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_gateway_process_answers_health_then_stops_cleanly_on_signal(tmp_path, sig):
    port = _free_port()
    cfg = tmp_path / "yihu.toml"
    cfg.write_text(f'[gateway]\nmode = "drill"\ndata_dir = "data"\n[http]\nport = {port}\n[log]\nformat = "json"\n'
                   f'[ivr]\nport = {_free_port()}\n[embedded]\nami_port = {_free_port()}\n')
    # Logs go to a file: a pipe nobody reads would fill up and stall the gateway's writes.
    out_path, err_path = tmp_path / "out.log", tmp_path / "err.log"
    with out_path.open("w") as out_f, err_path.open("w") as err_f:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)],
                                stdout=out_f, stderr=err_f, text=True)
    try:
        body = None
        deadline = time.monotonic() + 30
        # /health is 503 while the emulated modems initialise, then 200 (degraded until all are up).
        while time.monotonic() < deadline and (body is None or b'"status": "ok"' not in body):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
                    data = b""
                    while chunk := s.recv(4096):
                        data += chunk
                body = data
            except OSError:
                assert proc.poll() is None, err_path.read_text()
                threading.Event().wait(0.2)   # a subprocess start-up, not a unit of our own time
        assert body is not None and b"200 OK" in body and b'"status": "ok"' in body
        assert b'"mode": "drill"' in body
        proc.send_signal(sig)
        proc.wait(timeout=30)
        out, err = out_path.read_text(), err_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert (tmp_path / "data" / "drill.sqlite").exists()      # created on first run; never the live file
    assert not (tmp_path / "data" / "yihu.sqlite").exists()
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert records, out
    assert any("Main loop terminated" in r["message"] for r in records)
    assert any(r["message"].startswith("DRILL MODE (演练)") and r["level"] == "warn" for r in records)
    assert all({"time", "level", "namespace", "message"} <= set(r) for r in records)
    assert any(r.get("modem", "").endswith("modem0") for r in records)    # fields stay queryable
    assert "Traceback" not in out + err
