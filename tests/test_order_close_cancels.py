"""Closing an order stops what it still owes, on the running gateway: the SMS segments not yet
submitted and the call attempts not yet placed are cancelled, the answer says how many, and
nothing cancelled ever reaches the (emulated) network."""
import json

import pytest_twisted
import treq
from sqlalchemy import func, select
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from gateway.config import load_config
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.storage.schema import call_attempts, sms_segments
from gateway.wiring import build_service
from tests.test_embedded_drill import ROSTER, eventually


def count_by_state(table):
    return lambda conn: dict(conn.execute(select(table.c.state, func.count()).group_by(table.c.state)).all())


@pytest_twisted.inlineCallbacks
def test_close_cancels_unsent_segments_and_unplaced_calls_and_says_how_many(migrated_url, tmp_path):
    # One slow modem (0.2 s a segment: 160 segments take half a minute) and Asterisk unreachable
    # (AMI off): the calls wait for the link, none is placed.
    cfg = load_config(None, {
        "gateway": {"database_url": migrated_url, "data_dir": str(tmp_path), "embedded": True},
        "http": {"port": 0}, "ami": {"enabled": False},
        "ivr": {"port": 0, "speech": False},
        "embedded": {"modems": 1, "segment_seconds": 0.2, "ami_port": 0},
        "escalation": {"refresh_seconds": 0.2},
    })
    gw = build_service(cfg, reactor)
    gw.startService()
    try:
        yield gw.database.run(import_roster, read_roster(ROSTER), source="roster", actor="test")
        port = (yield gw.http_service.listening).getHost().port
        base = f"http://127.0.0.1:{port}/api/v1"
        order = {"incident_ref": "CLOSE-1", "kind": "rescue", "text": "白塔镇山体滑坡，请立即赶赴现场。",
                 "target": "all", "rule": "same_township", "voice": True}
        resp = yield treq.post(f"{base}/orders", json=order, headers={"Idempotency-Key": "close-1"})
        code = json.loads((yield resp.content()))["order_code"]
        yield eventually(lambda: gw.database.run(count_by_state(sms_segments)).addCallback(
            lambda c: c.get("sent", 0) + c.get("delivered", 0) >= 4), "the first segments out")

        resp = yield treq.post(f"{base}/orders/{code}/close", json={})
        closed = json.loads((yield resp.content()))
        assert resp.code == 200 and closed["state"] == "closed"
        assert closed["call_attempts_cancelled"] == 80            # 40 commanders + 40 deputies, none placed
        assert 100 < closed["sms_segments_cancelled"] < 160
        assert closed["escalation_steps_cancelled"] > 0

        @inlineCallbacks
        def settled():
            c = yield gw.database.run(count_by_state(sms_segments))
            return c if not c.get("submitting") and not c.get("queued") else None
        segs = yield eventually(settled, "the segment in flight at the close answered")
        assert segs["cancelled"] == closed["sms_segments_cancelled"]
        attempts = yield gw.database.run(count_by_state(call_attempts))
        assert attempts == {"cancelled": 80}
        # What the network saw is exactly what was submitted before the close: nothing cancelled went.
        yield eventually(lambda: gw.database.run(lambda c: None).addCallback(lambda _: True), "db")
        lines = [json.loads(x) for x in (tmp_path / "network.jsonl").read_text().splitlines()]
        assert len([x for x in lines if x["kind"] == "sms"]) == segs.get("sent", 0) + segs.get("delivered", 0)
        assert not [x for x in lines if x["kind"] == "call"]
    finally:
        yield gw.stopService()
        gw.database.stop()
