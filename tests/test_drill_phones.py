"""`yihu drill sms` and `yihu drill inbox` against a running embedded gateway (real HTTP, the
emulated modems on ptys): a commander's reply goes in as from a phone, the confirmation and the
order show in the phone's inbox; bad input is refused, naming the field."""
from __future__ import annotations

import json

import pytest_twisted
import treq
from twisted.internet import reactor, threads
from twisted.internet.defer import inlineCallbacks

from gateway.cli import main
from gateway.config import load_config
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.wiring import build_service
from tests.test_embedded_drill import ROSTER, eventually, free_port

DEPUTY = "+447700900019"       # 董红, deputy of PUB-07


@pytest_twisted.inlineCallbacks
def test_drill_sms_and_inbox_commands(migrated_url, tmp_path, capsys):
    cfg = load_config(None, {
        "gateway": {"database_url": migrated_url, "data_dir": str(tmp_path), "embedded": True},
        "http": {"port": 0}, "ivr": {"port": free_port(), "speech": False},
        "embedded": {"modems": 2, "segment_seconds": 0.02, "ami_port": free_port()}})
    gw = build_service(cfg, reactor)
    gw.startService()
    try:
        yield gw.database.run(import_roster, read_roster(ROSTER), source="roster", actor="test")
        root = f"http://127.0.0.1:{(yield gw.http_service.listening).getHost().port}"
        resp = yield treq.post(f"{root}/api/v1/orders", json={
            "incident_ref": "DRILL-SMS", "kind": "rescue", "text": "白塔镇山体滑坡，请立即赶赴现场。",
            "target": "teams:PUB-07", "rule": "same_township"})
        code = json.loads((yield resp.content()))["order_code"]

        def cli(*argv):
            return threads.deferToThread(main, [*argv, "--url", root, "--database-url", migrated_url])

        @inlineCallbacks
        def inbox_has(text):
            status = yield cli("drill", "inbox", "+44 7700 900019")
            out = capsys.readouterr().out
            return status == 0 and text in out and out
        yield eventually(lambda: inbox_has(f"指令{code}"), "the order SMS in the deputy's inbox")
        assert (yield cli("drill", "sms", "--from", DEPUTY, f"{code} 到达现场")) == 0
        assert f"{DEPUTY} -> gateway" in capsys.readouterr().out
        out = yield eventually(lambda: inbox_has(f"已记录 {code} 到达"), "the confirmation in the inbox")
        assert out.index(f"指令{code}") < out.index(f"已记录 {code} 到达")        # oldest first
        resp = yield treq.get(f"{root}/api/v1/orders/{code}")
        team = json.loads((yield resp.content()))["teams"][0]
        assert (team["state"], team["channel"], team["answered_by"]) == ("arrived", "sms", "董红 (deputy)")
        # Bad input: a number that is none, an empty text, an unknown field, a wrong content type.
        assert (yield cli("drill", "sms", "--from", "12345", "x")) == 2
        assert "from: '12345' is not a valid number" in capsys.readouterr().err
        for body, field in (({"from": DEPUTY, "text": " "}, "text"), ({"from": DEPUTY, "text": "1", "x": 1}, "body")):
            resp = yield treq.post(f"{root}/emulator/sms", json=body)
            assert resp.code == 422 and json.loads((yield resp.content()))["field"] == field
        resp = yield treq.post(f"{root}/emulator/sms", data=b"from=x", headers={"Content-Type": "text/plain"})
        assert resp.code == 415
        resp = yield treq.get(f"{root}/emulator/nothing")
        assert resp.code == 404
    finally:
        yield gw.stopService()
        gw.database.stop()
