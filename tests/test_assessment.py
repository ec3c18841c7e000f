"""The assessment over seeded history with answers worked out by hand: orders created and
answered through the domain's own transactions at chosen times (day and night, both rules),
one team silent and chased, one order outside the range by the center's local day."""
from __future__ import annotations

import csv
import io
import random
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
from sqlalchemy import update

from gateway.config import load_config
from gateway.feedback.store import Answer, record_answer_tx
from gateway.orders.grammar import parse_reply
from gateway.orders.order import OrderRequest, Target
from gateway.orders.store import create_order_tx
from gateway.reports.assessment import assessment_tx, score
from gateway.reports.render import assessment_csv, assessment_html, assessment_text
from gateway.reports.timings import TeamTiming
from gateway.storage.schema import escalation_steps, order_teams, orders
from tests._http_rig import start_rig

ZONE = ZoneInfo("Asia/Shanghai")
PUB07 = "+447700900018"          # 冯明, commander of PUB-07
PRO05 = "+447700900081"          # 侯霞, commander of PRO-05
PRO05_DEPUTY = "+447700900082"   # 黎斌


def local(*args):
    return datetime(*args, tzinfo=ZONE)


# (when sent, rule, {phone: [(minutes after, reply text)]}); {code} is the order's code.
HISTORY = [
    (local(2026, 3, 10, 10, 0), "same_township", {          # day: arrive within 20
        PUB07: [(2, "收到 {code}"), (15, "{code} 到达"), (120, "{code} 处置完毕 无需后续跟进 负责人冯明")]}),
    (local(2026, 3, 1, 0, 30), "same_township", {           # night (UTC still Feb 28): within 30
        PUB07: [(5, "{code}收到"), (35, "到达现场{code}")],
        PRO05_DEPUTY: [(25, "{code} 已到达")]}),
    (local(2026, 4, 1, 9, 0), "leaving_city", {             # day: assembled within 15
        PUB07: [(1, "{code} 收到"), (10, "{code} 集结完毕"), (40, "{code} 到达"),
                (300, "{code} 处置完毕 需后续跟进 负责人冯明 县应急局")],
        PRO05: [(20, "{code} 集结完毕")]}),
    (local(2026, 2, 28, 23, 30), "same_township", {          # the day before the range: not counted
        PUB07: [(1, "{code} 到达")]}),
]


def seed(conn, cfg):
    codes = []
    for sent, rule, replies in HISTORY:
        req = OrderRequest("XJ-HIST", "rescue", "历史指令", Target.parse("teams:PUB-07,PRO-05"), rule)
        created = create_order_tx(conn, req, sent, cfg, random.Random(len(codes)))
        codes.append(created.code)
        for phone, answers in replies.items():
            for minutes, text in answers:
                v = record_answer_tx(conn, Answer("sms", phone, parse_reply(text.format(code=created.code)),
                                                  sent + timedelta(minutes=minutes)), cfg)
                assert v.outcome == "recorded", (text, v)
    # PRO-05 never answered the first order: its first two receipt rungs fired.
    first = conn.execute(orders.select().where(orders.c.code == codes[0])).first()
    ot = conn.execute(order_teams.select().where(order_teams.c.order_id == first.id)).all()
    pro = [r.id for r in ot if r.team_id != min(x.team_id for x in ot)][0]
    steps = conn.execute(escalation_steps.select().where(escalation_steps.c.order_team_id == pro)
                         .where(escalation_steps.c.stage == "receipt").order_by(escalation_steps.c.due_at)).all()
    for s in steps[:2]:
        conn.execute(update(escalation_steps).where(escalation_steps.c.id == s.id)
                     .values(state="fired", fired_at=s.due_at))
    return codes


EXPECTED = {
    "PUB-07": dict(orders=3,
                   median={"received": 2, "assembled": 10, "arrived": 35, "finished": 210},
                   p90={"received": 5, "assembled": 10, "arrived": 40, "finished": 300},
                   # arrival: 15 <= 20 by day, 35 > 30 by night (the leaving-city order has no arrival
                   # deadline); report: two within 24 h, the night order's never came
                   on_time={"assembled": 1.0, "arrived": 0.5, "finished": round(2 / 3, 4)},
                   silences=0, escalations=0),
    "PRO-05": dict(orders=3,
                   median={"received": 22.5, "assembled": 20, "arrived": 25, "finished": None},
                   p90={"received": 25, "assembled": 20, "arrived": 25, "finished": None},
                   on_time={"assembled": 0.0, "arrived": 0.5, "finished": 0.0},
                   silences=1, escalations=2),
}


def check(teams):
    assert [(t["team_code"], t["category"]) for t in teams] == [("PRO-05", "real"), ("PUB-07", "real")]
    for t in teams:
        want = EXPECTED[t["team_code"]]
        assert t["orders"] == want["orders"]
        assert t["median_minutes"] == want["median"], t["team_code"]
        assert t["p90_minutes"] == want["p90"], t["team_code"]
        assert t["on_time_rate"] == want["on_time"], t["team_code"]
        assert (t["silences"], t["escalations"]) == (want["silences"], want["escalations"])


@pytest_twisted.inlineCallbacks
def test_assessment_of_seeded_history_over_api_and_files(migrated_url, tmp_path):
    rig = yield start_rig(migrated_url, tmp_path)
    try:
        cfg = load_config(None, {}).escalation
        yield rig.db.run(seed, cfg)
        status, body, _ = yield rig.call("GET", "/api/v1/reports/assessment?from=2026-03-01&to=2026-06-30",
                                         key=rig.keys["read"])
        assert status == 200, body
        assert (body["from"], body["to"], body["time_zone"]) == ("2026-03-01", "2026-06-30", "Asia/Shanghai")
        check(body["teams"])
        # Bad ranges are refused, naming the field.
        for query, field in (("from=2026-06-30&to=2026-03-01", "to"), ("from=2026-02-30&to=2026-03-01", "from"),
                             ("from=2026-03-01", "to")):
            status, body, _ = yield rig.call("GET", f"/api/v1/reports/assessment?{query}", key=rig.keys["read"])
            assert status == 422 and body["field"] == field, (query, body)
        # The same figures in the CSV and the HTML (with its SVG chart).
        a = yield rig.db.run(assessment_tx, cfg, date(2026, 3, 1), date(2026, 6, 30), "Asia/Shanghai",
                             local(2026, 7, 1, 0, 0))
        rows = {r["team_code"]: r for r in csv.DictReader(io.StringIO(assessment_csv(a)))}
        assert rows["PUB-07"]["median_arrived_min"] == "35" and rows["PUB-07"]["p90_finished_min"] == "300"
        assert rows["PRO-05"]["on_time_arrived"] == "0.5" and rows["PRO-05"]["silences"] == "1"
        html = assessment_html(a, cfg)
        chart = html[html.index("<svg"):html.index("</svg>")]
        assert html.count("<svg") == 1 and "PRO-05" in chart and "夜间到达 30分" in chart
        assert "<td>PRO-05</td>" in html and "50%" in html
        assert "PUB-07" in assessment_text(a)
    finally:
        yield rig.stop()


def test_drill_orders_are_scored_apart():
    sent = local(2026, 5, 1, 10, 0)

    def timing(drill, arrived):
        return TeamTiming("0001", "X", drill, "same_township", False, sent, "PUB-07", "白塔镇", "public", "arrived",
                          {"received": arrived, "assembled": None, "arrived": arrived, "finished": None},
                          {}, {"arrived": arrived <= 20}, answers=[object()])
    scores = score([timing(True, 30), timing(False, 10), timing(False, 14)])
    assert [(s.category, s.orders, s.median_minutes["arrived"], s.on_time_rate["arrived"]) for s in scores] == \
        [("real", 2, 12, 1.0), ("drill", 1, 30, 0.0)]
