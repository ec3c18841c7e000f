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
