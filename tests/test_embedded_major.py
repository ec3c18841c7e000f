"""A major order on the embedded default, end to end: two teams, situation reports by SMS, one
missed report chased, and the leaders' SMS counted at the emulated network."""
import json
from collections import Counter

import pytest_twisted
import treq
from twisted.internet import reactor

from gateway.config import load_config
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.wiring import build_service
from tests.test_embedded_drill import ROSTER, eventually, free_port

PUB07 = ("+447700900018", "+447700900019")          # commander, deputy (example roster)
PRO05 = ("+447700900081", "+447700900082")
LEADERS = [f"+447700900{n}" for n in range(164, 171)]   # 总指挥, 2 副总指挥, 办公室主任, 3 县领导


@pytest_twisted.inlineCallbacks
def test_major_order_situation_reports_missed_report_chased_and_leaders_informed(migrated_url, tmp_path):
    cfg = load_config(None, {
        "gateway": {"database_url": migrated_url, "data_dir": str(tmp_path), "embedded": True},
        "http": {"port": 0},
        "ivr": {"port": free_port(), "speech": False},
        "embedded": {"modems": 2, "segment_seconds": 0.02, "ami_port": free_port()},
        "orders": {"major_report_minutes": 0.1},      # a report every 6 s: the drill's time scale
        "leaders": {"sweep_seconds": 0.2},
    })
    gw = build_service(cfg, reactor)
    gw.startService()
    try:
        yield gw.database.run(import_roster, read_roster(ROSTER), source="roster", actor="test")
        port = (yield gw.http_service.listening).getHost().port
        base = f"http://127.0.0.1:{port}/api/v1"
        network = gw.emulated_modems.network

        @pytest_twisted.inlineCallbacks
        def healthy():
            resp = yield treq.get(f"http://127.0.0.1:{port}/health")
            body = json.loads((yield resp.content()))
            return body["checks"].get("sms", {}).get("ok")      # "sms" once the modem bank is up
        yield eventually(healthy, "modems ready")
        resp = yield treq.post(f"{base}/orders", json={
            "incident_ref": "DRILL-MAJOR", "kind": "rescue", "text": "白塔镇山体滑坡，多户被埋，请立即赶赴现场。",
            "target": "teams:PUB-07,PRO-05", "rule": "same_township", "major": True})
        created = json.loads((yield resp.content()))
        assert resp.code == 201, created
        code = created["order_code"]

        def texts(phone):
            return [t for t, n in network.complete_messages(phone).items() for _ in range(n) if code in t]

        def kinds(phone):
            marks = {"created": "已调2支队伍", "first_arrived": "首支队伍", "all_arrived": "已全部到达",
                     "missed": "现场动态超时未反馈"}
            return Counter(k for t in texts(phone) for k, m in marks.items() if m in t)

        yield eventually(lambda: all(kinds(p)["created"] == 1 for p in LEADERS), "leaders told of the major order")
        yield eventually(lambda: all(any("续报现场动态" in t for t in texts(p)) for p in PUB07 + PRO05),
                         "the order SMS (asking for situation reports) at both teams")
        gw.emulated_modems.modems[0].receive_sms(PUB07[1], f"{code} 到达")
        gw.emulated_modems.modems[1].receive_sms(PRO05[0], f"{code} 已到达现场")

        @pytest_twisted.inlineCallbacks
        def summary():
            resp = yield treq.get(f"{base}/orders/{code}")
            return json.loads((yield resp.content()))

        @pytest_twisted.inlineCallbacks
        def both_arrived():
            s = yield summary()
            return s if all(t["state"] == "arrived" for t in s["teams"]) else None
        yield eventually(both_arrived, "both teams arrived by SMS")
        # PUB-07 reports the situation by SMS; PRO-05 stays silent and is chased.
        gw.emulated_modems.modems[0].receive_sms(PUB07[0], f"{code} 续报 已挖出被困群众2人，继续搜救")
        yield eventually(lambda: any("催报" in t for t in texts(PRO05[0])) and any("催报" in t for t in texts(PRO05[1])),
                         "the missed report chased by SMS at PRO-05's commander and deputy")

        @pytest_twisted.inlineCallbacks
        def reported():
            s = yield summary()
            return s if any(e["kind"] == "situation" for e in s["timeline"]) else None
        s = yield eventually(reported, "the situation report on the order's timeline")
        [report] = [e for e in s["timeline"] if e["kind"] == "situation"]
        assert report["text"] == "已挖出被困群众2人，继续搜救" and report["channel"] == "sms"
        assert "白塔镇综合应急救援分队" in report["who"]
        assert [t["state"] for t in s["teams"]] == ["arrived", "arrived"]    # a report is never a state
        pro05 = next(t for t in s["teams"] if t["team_code"] == "PRO-05")
        assert any(st["stage"] == "situation" and st["action"] == "sms_again" for st in pro05["steps"])
        # The leaders: once each for created, first arrived, all arrived; the missed report too.
        yield eventually(lambda: all(kinds(p)["missed"] >= 1 and kinds(p)["all_arrived"] == 1 for p in LEADERS),
                         "leaders told of the arrivals and the missed report")
        for p in LEADERS:
            k = kinds(p)
            assert (k["created"], k["first_arrived"], k["all_arrived"]) == (1, 1, 1), (p, k)
        # The wall's board shows the order as major, with its timeline.
        resp = yield treq.get(f"http://127.0.0.1:{port}/board")
        page = yield resp.text("utf-8")
        assert "【重大】" in page and "已挖出被困群众2人" in page
        leader_sms = sum(len(texts(p)) for p in LEADERS)
        assert leader_sms >= 4 * len(LEADERS)
        assert sum(1 for e in s["timeline"] if e["kind"] == "leader_sms") >= 3 * len(LEADERS)
    finally:
        yield gw.stopService()
        gw.database.stop()
