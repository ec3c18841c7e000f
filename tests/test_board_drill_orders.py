"""On live hardware a drill order is tagged 演练 on the wall and a real incident takes the focus
before it, however much newer the drill is; the live wall has no drill-mode banner."""
import re

import pytest_twisted

from tests._http_rig import start_rig


def _order(rig, ref, drill):
    return rig.call("POST", "/api/v1/orders", {
        "incident_ref": ref, "kind": "rescue", "rule": "same_township", "target": "teams:PUB-07",
        "text": "白塔镇山体滑坡，请立即赶赴现场。", "drill": drill}, key=rig.keys["dispatch"])


@pytest_twisted.inlineCallbacks
def test_real_order_in_focus_drill_order_tagged_in_the_strip(migrated_url, tmp_path):
    rig = yield start_rig(migrated_url, tmp_path)
    try:
        status, real, _ = yield _order(rig, "XJ-REAL-1", False)
        assert status == 201, real
        status, drill, _ = yield _order(rig, "XJ-DRILL-1", True)       # the newer one
        assert status == 201, drill
        status, page, _ = yield rig.call("GET", "/board", key=rig.keys["read"])
        assert status == 200
        assert re.search(r"data-order='(\d+)'", page).group(1) == real["order_code"]
        footer = page.split("<footer>")[1]
        assert f"<span class=drilltag>演练</span>{drill['order_code']} XJ-DRILL-1" in footer
        assert "<div class=drill>" not in page and "<body class=drillmode>" not in page and "data-drill=0" in page
        # Asked for, the drill order takes the focus, tagged in the header.
        status, page, _ = yield rig.call("GET", f"/board?order={drill['order_code']}", key=rig.keys["read"])
        header = page.split("<header>")[1].split("</header>")[0]
        assert f"<span class=drilltag>演练</span><b>指令 {drill['order_code']}</b>" in header
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_major_incident_takes_the_focus_tagged_with_its_situation_reports(migrated_url, tmp_path):
    rig = yield start_rig(migrated_url, tmp_path)
    try:
        status, major, _ = yield rig.call("POST", "/api/v1/orders", {
            "incident_ref": "XJ-MAJOR-1", "kind": "rescue", "rule": "same_township", "target": "teams:PUB-08",
            "text": "白塔镇山体滑坡，请立即赶赴现场。", "major": True}, key=rig.keys["dispatch"])
        assert status == 201, major
        status, newer, _ = yield _order(rig, "XJ-REAL-2", False)
        assert status == 201, newer
        status, page, _ = yield rig.call("GET", "/board", key=rig.keys["read"])
        assert re.search(r"data-order='(\d+)'", page).group(1) == major["order_code"]
        assert f"<span class=majortag>重大</span><b>指令 {major['order_code']}</b>" in page
        assert f"<span class=other>{newer['order_code']} XJ-REAL-2" in page.split("<footer>")[1]
    finally:
        yield rig.stop()


def test_the_timeline_shows_the_latest_situation_reports_and_notes_not_the_leaders_sms():
    from datetime import datetime, timedelta, timezone
    from types import SimpleNamespace

    from adapters.board import BoardResource
    from gateway.orders.summary import TimelineEntry
    board = BoardResource(None, None, None, "Asia/Shanghai")
    at = datetime(2026, 6, 1, 2, 0, tzinfo=timezone.utc)       # 10:00 in Shanghai
    entries = [TimelineEntry(at + timedelta(minutes=n), "situation", "白塔镇综合应急救援分队", f"塌方第{n}报")
               for n in range(5)]
    entries.insert(2, TimelineEntry(at, "leader_sms", "分管副县长", "汇总"))
    entries.append(TimelineEntry(at + timedelta(minutes=9), "note", "分管副县长", "注意安全"))
    html = board._timeline(SimpleNamespace(timeline=entries))
    assert html.count("<li>") == 4 and "汇总" not in html and "塌方第0报" not in html
    assert "<li>10:04 现场动态 白塔镇：塌方第4报</li>" in html and "<li>10:09 领导批示 分管副县长：注意安全</li>" in html
    assert board._timeline(None) == "" and board._timeline(SimpleNamespace(timeline=[])) == ""
