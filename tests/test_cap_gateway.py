"""The CAP intake wired into the gateway (embedded default): a warning dropped into the inbox
directory becomes an order sent to the teams its area names, the board shows the full warning
and the proposals waiting for a dispatcher, and the Cancel posted to the API closes the order."""
import json
from pathlib import Path

import pytest_twisted
import treq
from sqlalchemy import select
from twisted.internet import reactor

from gateway.config import load_config
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.storage.schema import event_log
from gateway.wiring import build_service
from tests.test_embedded_drill import eventually, free_port

HERE = Path(__file__).resolve().parent
ROSTER = HERE.parent / "deploy" / "examples" / "roster.yaml"
RAIN = [(HERE / "cap" / f"zh_rainstorm_{k}.xml").read_bytes() for k in ("alert", "update", "cancel")]


@pytest_twisted.inlineCallbacks
def test_inbox_warning_becomes_an_order_and_the_api_cancel_closes_it(migrated_url, tmp_path):
    inbox = tmp_path / "cap-inbox"
    cfg = load_config(None, {
        "gateway": {"database_url": migrated_url, "data_dir": str(tmp_path), "embedded": True},
        "http": {"port": 0},
        "ivr": {"port": free_port(), "speech": False},
        "embedded": {"modems": 1, "segment_seconds": 0.02, "ami_port": free_port()},
        "cap": {"inbox_dir": str(inbox), "poll_s": 0.2, "rules": [
            {"name": "暴雨红色预警", "category": ["Met"], "event": ["暴雨"], "target": "township:*",
             "confirm": False},
            {"name": "儿童失踪", "category": ["Rescue"], "target": "kind:public", "kind": "stability"}]},
    })
    gw = build_service(cfg, reactor)
    gw.startService()
    try:
        yield gw.database.run(import_roster, read_roster(ROSTER), source="roster", actor="test")
        http = (yield gw.http_service.listening).getHost().port
        base = f"http://127.0.0.1:{http}"
        (inbox / ".rain.xml.part").write_bytes(RAIN[0])
        (inbox / ".rain.xml.part").rename(inbox / "rain.xml")

        def get(path):
            return treq.get(base + path).addCallback(treq.content)

        @pytest_twisted.inlineCallbacks
        def order_made():
            body = json.loads((yield get("/api/v1/orders")))
            return body["orders"]
        (order,) = yield eventually(order_made, "the order made from the inbox warning", timeout=20)
        assert order["incident_ref"] == "CAP 33102441600000_20260701083000"
        assert (inbox / "done" / "rain.xml").exists()
        xml = {"Content-Type": "application/cap+xml"}
        resp = yield treq.post(base + "/api/v1/cap", data=(HERE / "cap" / "cap_amber.xml").read_bytes(), headers=xml)
        assert resp.code == 201 and json.loads((yield resp.content()))["action"] == "proposal"
        board = (yield get("/board")).decode()
        assert "预警全文" in board and "防汛抗旱专业队做好抢险准备" in board
        assert "待确认指令 1" in board and "kind:public" in board
        resp = yield treq.post(base + "/api/v1/cap", data=RAIN[2], headers=xml)
        body = json.loads((yield resp.content()))
        assert resp.code == 201 and body["action"] == "order_closed" and body["order_code"] == order["order_code"]
        alerts = json.loads((yield get("/api/v1/cap/alerts")))["alerts"]
        assert [(a["source"], a["action"]) for a in alerts] == [
            ("open:loopback", "order_closed"), ("open:loopback", "proposal"), ("inbox:rain.xml", "order_created")]
        kinds = yield gw.database.run(lambda c: [r.kind for r in c.execute(select(event_log.c.kind))])
        assert {"cap.accepted", "order.created", "order.proposed", "order.closed"} <= set(kinds)
    finally:
        yield gw.stopService()
