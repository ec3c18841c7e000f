"""The gateway on its embedded default, end to end, as a drill sees it.

Everything real but the hardware: the HTTP API, the database, the modem bank driving emulated
modems on pseudo-terminals through the real serial code, the AMI link to the emulated Asterisk,
the FastAGI server that the emulated Asterisk calls into, the feedback and escalation engines.
A dispatcher POSTs an order; commanders' phones ring and press 1 (received); the order SMS
reaches every commander and deputy; a commander texts back "到达" and gets a confirmation.
"""
import json
import socket
from pathlib import Path

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from gateway.config import load_config
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.wiring import build_service

ROSTER = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "roster.yaml"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@inlineCallbacks
def eventually(check, what, timeout=30.0, every=0.1):
    """Poll a real-transport outcome with a deadline (end-to-end only; units use Clocks)."""
    deadline = reactor.seconds() + timeout
    while True:
        result = yield check()
        if result:
            return result
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield deferLater(reactor, every, lambda: None)


@pytest_twisted.inlineCallbacks
def test_drill_order_by_api_reaches_teams_by_sms_and_voice_and_takes_replies(migrated_url, tmp_path):
    cfg = load_config(None, {
        "gateway": {"database_url": migrated_url, "data_dir": str(tmp_path), "embedded": True},
        "http": {"port": 0},
        "ivr": {"port": free_port(), "speech": False, "call_retry_delay_s": 1.0},
        "embedded": {"modems": 2, "segment_seconds": 0.02, "ami_port": free_port()},
    })
    gw = build_service(cfg, reactor)
    gw.startService()
    try:
        yield gw.database.run(import_roster, read_roster(ROSTER), source="roster", actor="test")
        http_port = (yield gw.http_service.listening).getHost().port
        base = f"http://127.0.0.1:{http_port}/api/v1"

        @inlineCallbacks
        def healthy():
            resp = yield treq.get(f"http://127.0.0.1:{http_port}/health")
            body = json.loads((yield resp.content()))
            return resp.code == 200 and body["checks"]["ami"]["ok"] and body["checks"]["sms"]["ok"]
        yield eventually(healthy, "AMI logged in and modems ready")

        order = {"incident_ref": "DRILL-01", "kind": "rescue", "text": "白塔镇山体滑坡，请立即赶赴现场。",
                 "target": "teams:PUB-07,PRO-05", "rule": "same_township", "voice": True}
        resp = yield treq.post(f"{base}/orders", json=order, headers={"Idempotency-Key": "drill-01"})
        created = json.loads((yield resp.content()))
        assert resp.code == 201, created
        code = created["order_code"]
        assert created["teams"] == 2
        # A retried POST with the same key does not create a second order.
        resp = yield treq.post(f"{base}/orders", json=order, headers={"Idempotency-Key": "drill-01"})
        again = json.loads((yield resp.content()))
        assert resp.code == 200 and again["order_code"] == code and again["existing"] is True

        @inlineCallbacks
        def summary():
            resp = yield treq.get(f"{base}/orders/{code}")
            return json.loads((yield resp.content()))

        @inlineCallbacks
        def all_received():
            s = yield summary()
            return s if all(t["state"] == "received" for t in s["teams"]) else None
        s = yield eventually(all_received, "both teams received by keypad")
        assert {t["channel"] for t in s["teams"]} == {"keypad"}

        def voice_rows(conn):
            from sqlalchemy import select
            from gateway.storage.schema import deliveries
            return conn.execute(select(deliveries.c.phone, deliveries.c.state, deliveries.c.attempts)
                                .where(deliveries.c.order_id == created["order_id"], deliveries.c.channel == "voice")).all()
        rows = yield eventually(lambda: gw.database.run(voice_rows).addCallback(
            lambda rs: rs if rs and all(r.state == "answered" for r in rs) else None), "voice deliveries answered")
        # One row per phone called, with its attempts on it: nothing recorded twice.
        assert sorted(r.phone for r in rows) == ["+447700900018", "+447700900019", "+447700900081", "+447700900082"]
        assert all(r.attempts == 1 for r in rows)
        # Each answered call came through the emulated PBX with its own one-time token, used once.
        def trust_rows(conn):
            from sqlalchemy import select
            from gateway.storage.schema import audit_log, call_tokens_used
            return (conn.execute(select(call_tokens_used.c.phone)).scalars().all(),
                    conn.execute(select(audit_log.c.action).where(audit_log.c.action.like("auth.refused.%"))).all())
        used, refusals = yield gw.database.run(trust_rows)
        assert sorted(used) == sorted(r.phone for r in rows) and refusals == []
        assert (tmp_path / "ivr-token.key").stat().st_mode & 0o077 == 0
        assert all("commander" in t["answered_by"] or "deputy" in t["answered_by"] for t in s["teams"])

        # The order SMS reached the commander and the deputy of both teams, whole, once.
        network = gw.emulated_modems.network
        phones = ["+447700900018", "+447700900019", "+447700900081", "+447700900082"]

        def sms_arrived():
            got = [network.complete_messages(p) for p in phones]
            return all(any(code in text and "白塔镇山体滑坡" in text for text in c) for c in got)
        yield eventually(lambda: sms_arrived(), "order SMS at all four phones")
        for p in phones:
            copies = [n for text, n in network.complete_messages(p).items() if code in text and "山体滑坡" in text]
            assert copies == [1], (p, network.complete_messages(p))

        # PUB-07's deputy texts back from the field: arrived.
        gw.emulated_modems.modems[0].receive_sms("+447700900019", f"{code} 已到达现场")

        @inlineCallbacks
        def arrived():
            s = yield summary()
            team = next(t for t in s["teams"] if t["team_code"] == "PUB-07")
            return team if team["state"] == "arrived" else None
        team = yield eventually(arrived, "PUB-07 arrived by SMS")
        assert team["channel"] == "sms"
        # The wall's status board shows the order and where each team stands.
        resp = yield treq.get(f"http://127.0.0.1:{http_port}/board")
        page = (yield resp.text("utf-8"))
        assert resp.code == 200 and code in page and "白塔镇综合应急救援分队" in page
        assert "已到达" in page and "已收到" in page and "4/4" not in page and "2/2 modems usable" in page
        assert "演练" in page and "class=drill" in page         # drill mode: the banner nobody can miss
        logged = gw.events.since(0)
        assert logged and all(e.payload["drill"] is True for e in logged)
        health = json.loads((yield (yield treq.get(f"http://127.0.0.1:{http_port}/health")).content()))
        assert health["mode"] == "drill"
        yield eventually(lambda: any(f"已记录 {code} 到达" in t for t in network.complete_messages("+447700900019")),
                         "the confirmation SMS to the deputy")
    finally:
        yield gw.stopService()
        gw.database.stop()
