"""CAP alerts become orders: a Chinese rainstorm warning, its Update and its Cancel create, update
and close the mapped order; the same alert twice makes one order; confirm = true makes a
proposal a dispatcher turns into an order; refusals keep the raw document.  Both backends."""
import json
from pathlib import Path

import pytest_twisted
from sqlalchemy import func, select
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from gateway.cap.config import CapRule, CapSection
from gateway.cap.inbox import CapInbox
from gateway.cap.intake import CapIntake
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.escalation.config import EscalationConfig
from gateway.orders.service import OrderService
from gateway.storage.schema import cap_alerts, deliveries, escalation_steps, event_log, order_teams, orders, teams
from tests._http_rig import start_rig

HERE = Path(__file__).resolve().parent
ROSTER = HERE.parent / "deploy" / "examples" / "roster.yaml"
RAIN = [(HERE / "cap" / f"zh_rainstorm_{k}.xml").read_bytes() for k in ("alert", "update", "cancel")]

RULES = [
    CapRule(name="暴雨红色预警", category=["Met"], event=["暴雨"], severity=["Extreme", "Severe"],
            target="township:*", kind="rescue", response_rule="same_township", voice=False, confirm=False),
    CapRule(name="地震", category=["Geo"], target="specialty:地质灾害", kind="rescue", confirm=True),
    CapRule(name="儿童失踪", category=["Rescue"], event=["Child"], area=["Los Angeles"], target="kind:public",
            kind="stability", confirm=True),
]


@inlineCallbacks
def rig(database, **cfg):
    yield database.run(import_roster, read_roster(ROSTER), source="t", actor="test")
    return make_intake(database, **cfg), database


def make_intake(database, **cfg):
    orders_svc = OrderService(database, reactor, None, None)
    return CapIntake(database, reactor, orders_svc, CapSection(rules=cfg.pop("rules", RULES), **cfg),
                     EscalationConfig())


def q(database, stmt):
    return database.run(lambda conn: conn.execute(stmt).all())


def logged(database):
    """The events committed so far (the event log), oldest first: [(kind, payload)]."""
    return database.run(lambda conn: [(r.kind, r.payload) for r in conn.execute(
        select(event_log.c.kind, event_log.c.payload).order_by(event_log.c.id))])


@inlineCallbacks
def kinds(database):
    return [k for k, _ in (yield logged(database))]


@pytest_twisted.inlineCallbacks
def test_rainstorm_alert_update_cancel_create_update_close_the_order(database):
    intake, bus = yield rig(database)
    out = yield intake.take(RAIN[0], "api:test")
    assert (out.state, out.action, out.rule) == ("accepted", "order_created", "暴雨红色预警")
    code = out.order_code
    (order,) = yield q(database, select(orders).where(orders.c.code == code))
    assert order.incident_ref == "CAP 33102441600000_20260701083000" and order.kind == "rescue"
    # the order text: headline, description and instruction, cut to 120 characters
    assert len(order.text) == 120 and order.text.endswith("…") and order.text.startswith("仙居县气象台发布暴雨红色预警信号")
    names = yield q(database, select(teams.c.township).join(order_teams, order_teams.c.team_id == teams.c.id)
                    .where(order_teams.c.order_id == order.id))
    assert sorted(n.township for n in names) == ["田市镇", "白塔镇"]         # the townships the area names
    (row,) = yield q(database, select(cap_alerts).where(cap_alerts.c.id == out.alert_id))
    assert row.raw == RAIN[0] and row.order_id == order.id and "防汛抗旱专业队做好抢险准备" in row.text_full
    assert (yield kinds(database)) == ["order.created", "cap.accepted"]
    sms_before = (yield q(database, select(func.count()).select_from(deliveries)
                          .where(deliveries.c.order_id == order.id)))[0][0]
    assert sms_before == 4                                                     # commander + deputy, 2 teams

    up = yield intake.take(RAIN[1], "api:test")
    assert (up.action, up.order_code) == ("order_updated", code)
    (order,) = yield q(database, select(orders).where(orders.c.id == order.id))
    assert "更新暴雨红色预警信号" in order.text and "180毫米" in order.text and order.state == "open"
    n = (yield q(database, select(func.count()).select_from(deliveries).where(deliveries.c.order_id == order.id)))[0][0]
    assert n == 2 * sms_before                                                 # the update goes to the same people
    assert (yield kinds(database))[-2:] == ["cap.accepted", "order.updated"]

    cancel = yield intake.take(RAIN[2], "inbox:cancel.xml")
    assert (cancel.action, cancel.order_code) == ("order_closed", code)
    (order,) = yield q(database, select(orders).where(orders.c.id == order.id))
    assert order.state == "closed"
    pending = yield q(database, select(func.count()).select_from(escalation_steps)
                      .join(order_teams, order_teams.c.id == escalation_steps.c.order_team_id)
                      .where(order_teams.c.order_id == order.id, escalation_steps.c.state == "pending"))
    assert pending[0][0] == 0
    assert (yield kinds(database))[-1] == "order.closed"
    for kind, payload in (yield logged(database)):     # the stream and webhooks serialise them as they are
        json.dumps(payload)


@pytest_twisted.inlineCallbacks
def test_the_same_alert_twice_makes_one_order(database):
    intake, bus = yield rig(database)
    first = yield intake.take(RAIN[0], "api:a")
    again = yield intake.take(RAIN[0], "inbox:again.xml")
    assert again.state == "duplicate" and again.order_code == first.order_code
    assert (yield q(database, select(func.count()).select_from(orders)))[0][0] == 1
    rows = yield q(database, select(cap_alerts.c.state, cap_alerts.c.raw).order_by(cap_alerts.c.id))
    assert [r.state for r in rows] == ["accepted", "duplicate"] and rows[1].raw == RAIN[0]   # kept raw too
    assert (yield kinds(database)).count("order.created") == 1


@pytest_twisted.inlineCallbacks
def test_refused_documents_are_kept_raw_with_the_element(database):
    intake, bus = yield rig(database, max_bytes=4096)
    bad = RAIN[0].replace(b"<severity>Extreme</severity>", b"<severity>Red</severity>", 1)
    out = yield intake.take(bad, "api:test")
    assert out.state == "refused" and out.element == "/alert/info[1]/severity" and "'Red'" in out.reason
    big = RAIN[0] + b"<!--" + b"x" * 5000 + b"-->"
    out2 = yield intake.take(big, "api:test")
    assert out2.element == "/alert" and "over the limit of 4096" in out2.reason
    rows = yield q(database, select(cap_alerts).order_by(cap_alerts.c.id))
    assert [(r.state, r.element) for r in rows] == [("refused", "/alert/info[1]/severity"), ("refused", "/alert")]
    assert rows[0].raw == bad and rows[1].raw == big
    assert (yield q(database, select(func.count()).select_from(orders)))[0][0] == 0
    assert (yield kinds(database)) == ["cap.refused", "cap.refused"]


@pytest_twisted.inlineCallbacks
def test_oasis_examples_follow_the_rule_table(database):
    intake, bus = yield rig(database)
    storm = yield intake.take((HERE / "cap" / "cap_thunderstorm.xml").read_bytes(), "api:t")
    assert storm.action == "no_rule" and (yield kinds(database))[-1] == "cap.unmatched"     # no rule for Met/thunderstorm
    amber = yield intake.take((HERE / "cap" / "cap_amber.xml").read_bytes(), "api:t")
    assert (amber.action, amber.rule) == ("proposal", "儿童失踪")
    quake = yield intake.take((HERE / "cap" / "cap_earthquake.xml").read_bytes(), "api:t")
    # an Update of an alert never seen stands as a new one (CAP allows it): Geo -> the geology team
    assert (quake.action, quake.rule) == ("proposal", "地震")
    assert (yield q(database, select(func.count()).select_from(orders)))[0][0] == 0      # nothing sent unconfirmed


@pytest_twisted.inlineCallbacks
def test_api_posts_xml_and_confirms_proposals(migrated_url, tmp_path):
    r = yield start_rig(migrated_url, tmp_path, cap={"max_bytes": 8192, "rules": [  # keys of each scope, a roster
        {"name": "暴雨红色预警", "category": ["Met"], "event": ["暴雨"], "target": "township:*", "confirm": True}]})
    database = r.db
    read, dispatch = r.keys["read"], r.keys["dispatch"]
    xml = {"Content-Type": "application/xml"}
    try:
        status, body, _ = yield r.call("POST", "/api/v1/cap", raw=RAIN[0], key=read, headers=xml)
        assert status == 403                                                   # a read key takes no alert
        status, body, _ = yield r.call("POST", "/api/v1/cap", raw=RAIN[0], key=dispatch)
        assert status == 415 and body["field"] == "Content-Type"               # XML, said so
        status, body, _ = yield r.call("POST", "/api/v1/cap", raw=RAIN[0], key=dispatch, headers=xml)
        assert status == 201 and body["action"] == "proposal", body
        pid = body["proposal_id"]
        proposed = [p for k, p in (yield logged(database)) if k == "order.proposed"]
        assert proposed and proposed[0]["target"] == "township:田市镇,白塔镇"
        assert "防汛抗旱专业队做好抢险准备" in proposed[0]["text_full"]
        status, body, _ = yield r.call("GET", "/api/v1/proposals", key=read)
        assert [p["id"] for p in body["proposals"]] == [pid]
        status, body, _ = yield r.call("POST", f"/api/v1/proposals/{pid}/confirm", {}, key=read)
        assert status == 403
        status, body, _ = yield r.call("POST", f"/api/v1/proposals/{pid}/confirm", {"by": "值班员王"}, key=dispatch)
        assert status == 422 and body["field"] == "by"                         # the author is the key, never the body
        status, body, _ = yield r.call("POST", f"/api/v1/proposals/{pid}/confirm", {}, key=dispatch)
        assert status == 201 and body["teams"] == 2, body
        code = body["order_code"]
        status, again, _ = yield r.call("POST", f"/api/v1/proposals/{pid}/confirm", {}, key=dispatch)
        assert status == 200 and again["order_code"] == code and again["existing"]   # one order
        confirmed = [p for k, p in (yield logged(database)) if k == "order.proposal_confirmed"]
        assert [c["by"] for c in confirmed] == ["api:dispatch-desk"]
        (order,) = yield q(database, select(orders.c.created_by).where(orders.c.code == code))
        assert order.created_by == "api:dispatch-desk"
        status, body, _ = yield r.call("POST", "/api/v1/proposals/999/confirm", {}, key=dispatch)
        assert status == 404 and body["field"] == "proposal_id"
        # the Cancel closes the order the confirmed proposal became
        status, body, _ = yield r.call("POST", "/api/v1/cap", raw=RAIN[2], key=dispatch, headers=xml)
        assert status == 201 and body["action"] == "order_closed" and body["order_code"] == code
        status, body, _ = yield r.call("POST", "/api/v1/cap", raw=RAIN[2], key=dispatch, headers=xml)
        assert status == 200 and body["state"] == "duplicate" and body["order_code"] == code
        status, body, _ = yield r.call("POST", "/api/v1/cap", raw=b"<alert>", key=dispatch, headers=xml)
        assert status == 422 and body["element"].startswith("/") and "not well-formed" in body["reason"]
        status, body, _ = yield r.call("POST", "/api/v1/cap", raw=RAIN[0] + b" " * 9000, key=dispatch, headers=xml)
        assert status == 422 and body["element"] == "/alert" and "over the limit of 8192" in body["reason"]
        status, body, _ = yield r.call("GET", f"/api/v1/cap/alerts/{body['alert_id']}", key=read)
        assert status == 200 and body["state"] == "refused" and len(body["raw"].encode()) == 8192   # the first 8192 bytes kept
        sources = yield q(database, select(cap_alerts.c.source).order_by(cap_alerts.c.id))
        assert {s.source for s in sources} == {"api:dispatch-desk"}           # the key's name, never a header
    finally:
        yield r.stop()


@pytest_twisted.inlineCallbacks
def test_inbox_directory_takes_files_once(database, tmp_path):
    intake, bus = yield rig(database)
    tmp_path = tmp_path / "inbox"
    tmp_path.mkdir()
    inbox = CapInbox(reactor, intake, tmp_path, 60.0, 262144)
    (tmp_path / "done").mkdir()
    (tmp_path / "refused").mkdir()
    (tmp_path / "a.xml").write_bytes(RAIN[0])
    (tmp_path / "b.xml").write_bytes(b"not xml")
    (tmp_path / ".c.xml.part").write_bytes(RAIN[1])                # still being written: left alone
    n = yield inbox.sweep()
    assert n == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [".c.xml.part"]
    assert (tmp_path / "done" / "a.xml").exists() and (tmp_path / "refused" / "b.xml").exists()
    (tmp_path / "a.xml").write_bytes(RAIN[0])                      # dropped again (a feed's retry)
    yield inbox.sweep()
    assert (yield q(database, select(func.count()).select_from(orders)))[0][0] == 1
    states = yield q(database, select(cap_alerts.c.source, cap_alerts.c.state).order_by(cap_alerts.c.id))
    assert [tuple(s) for s in states] == [("inbox:a.xml", "accepted"), ("inbox:b.xml", "refused"),
                                          ("inbox:a.xml", "duplicate")]


@pytest_twisted.inlineCallbacks
def test_in_drill_mode_cap_orders_and_confirmed_proposals_are_drills(database):
    yield database.run(import_roster, read_roster(ROSTER), source="t", actor="test")
    intake = CapIntake(database, reactor, OrderService(database, reactor, None, None, drill_mode=True),
                       CapSection(rules=RULES), EscalationConfig())
    storm = yield intake.take(RAIN[0], "api:test")
    quake = yield intake.take((HERE / "cap" / "cap_earthquake.xml").read_bytes(), "api:t")
    created, _req = yield intake.confirm(quake.proposal_id, "api:duty")
    rows = yield q(database, select(orders.c.code, orders.c.drill).order_by(orders.c.id))
    # the emulators' gateway never sends a real-looking order, whichever way it came in
    assert [(r.code, r.drill) for r in rows] == [(storm.order_code, True), (created.code, True)]
