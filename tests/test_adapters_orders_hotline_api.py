"""The orders and hotline API routes: what dispatch software sends, and the errors it gets back."""
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest_twisted
import treq
from sqlalchemy import insert
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.web.resource import Resource
from twisted.web.server import Site

from adapters.api import ApiResource, Router
from adapters.events import EventBus
from adapters.hotline_api import add_hotline_routes
from adapters.orders_api import add_order_routes
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.orders.service import OrderService
from gateway.storage.schema import hotline_calls

ROSTER = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "roster.yaml"


@inlineCallbacks
def serve(database):
    yield database.run(import_roster, read_roster(ROSTER), source="t", actor="test")
    bus = EventBus(reactor)
    orders = OrderService(database, reactor, None, None, bus)
    router = Router()
    add_order_routes(router, database, orders, reactor)
    add_hotline_routes(router, database, "Asia/Shanghai")
    root = Resource()
    root.putChild(b"api", ApiResource(router))
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    return port, f"http://127.0.0.1:{port.getHost().port}/api/v1", bus


@inlineCallbacks
def call(method, url, body=None, **kw):
    resp = yield treq.request(method, url, json=body, **kw) if body is not None else treq.request(method, url, **kw)
    return resp.code, json.loads((yield resp.content()))


GOOD = {"incident_ref": "XJ-1", "kind": "stability", "text": "南峰街道聚集事件，请立即到场。",
        "target": {"how": "kind", "values": ["professional"]}, "rule": "leaving_city"}


@pytest_twisted.inlineCallbacks
def test_order_create_show_list_close(database):
    port, base, bus = yield serve(database)
    try:
        status, body = yield call("POST", f"{base}/orders", GOOD)
        assert status == 201 and body["teams"] == 16, body
        code = body["order_code"]
        assert [e.kind for e in bus.recent] == ["order.created"]
        status, s = yield call("GET", f"{base}/orders/{code}")
        assert status == 200 and s["onscene_commander"].startswith("县公安局局长")     # stability: the police chief
        assert len(s["teams"]) == 16 and s["sent_at"].endswith("+00:00") and "T" in s["sent_at"]
        status, listing = yield call("GET", f"{base}/orders")
        assert [o["order_code"] for o in listing["orders"]] == [code]
        status, closed = yield call("POST", f"{base}/orders/{code}/close", {"by": "值班长"})
        assert status == 200 and closed["state"] == "closed"
        status, listing = yield call("GET", f"{base}/orders")
        assert listing["orders"] == []
        status, err = yield call("POST", f"{base}/orders/{code}/close", {"by": "值班长"})
        assert status == 404 and code in err["error"]
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_drill_order_by_api_is_stored_listed_and_summarised_as_a_drill(database):
    port, base, bus = yield serve(database)
    try:
        status, body = yield call("POST", f"{base}/orders", {**GOOD, "drill": True, "incident_ref": "DRILL-1"})
        assert status == 201, body
        drill = body["order_code"]
        status, body = yield call("POST", f"{base}/orders", GOOD)
        real = body["order_code"]
        status, listing = yield call("GET", f"{base}/orders")
        assert {o["order_code"]: o["drill"] for o in listing["orders"]} == {drill: True, real: False}
        status, s = yield call("GET", f"{base}/orders/{drill}")
        assert s["drill"] is True
        assert [e.payload["drill"] for e in bus.recent] == [True, False]
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_bad_orders_are_refused_with_the_reason(database):
    port, base, bus = yield serve(database)
    try:
        cases = [
            ({**GOOD, "kind": "war"}, 400, "order kind 'war'"),
            ({**GOOD, "rule": "fast"}, 400, "response rule 'fast'"),
            ({k: v for k, v in GOOD.items() if k != "text"}, 400, "missing field: text"),
            ({**GOOD, "target": "squad:1"}, 400, "target 'squad:1'"),
            ({**GOOD, "target": 7}, 400, "field target must be a target"),
            ({**GOOD, "target": "teams:NOPE-1"}, 422, "no team matches target teams:NOPE-1"),
            ({**GOOD, "text": "   "}, 400, "needs an incident reference and a text"),
            ({**GOOD, "drill": "yes"}, 400, "drill must be true or false"),
        ]
        for body, status, fragment in cases:
            got_status, got = yield call("POST", f"{base}/orders", body)
            assert got_status == status and fragment in got["error"], (body, got_status, got)
        status, _ = yield call("GET", f"{base}/orders/9999")
        assert status == 404
        assert bus.recent == type(bus.recent)(maxlen=bus.recent.maxlen)     # nothing was created
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_hotline_calls_mark_callbacks_and_figures(database):
    now = datetime.now(timezone.utc)

    def add_call(conn):
        conn.execute(insert(hotline_calls).values(call_id="1764482000.12", line="119", caller="+8613905761234",
                                                  arrived_at=now, ended_at=now, outcome="abandoned_ivr",
                                                  callback_state="pending", updated_at=now))
    yield database.run(add_call)
    port, base, _ = yield serve(database)
    try:
        status, body = yield call("GET", f"{base}/hotline/calls")
        assert status == 200 and [c["call_id"] for c in body["calls"]] == ["1764482000.12"]
        status, body = yield call("POST", f"{base}/hotline/calls/1764482000.12/mark", {"valid": "yes"})
        assert status == 400 and "valid must be true or false" in body["error"]
        status, body = yield call("POST", f"{base}/hotline/calls/1764482000.12/mark",
                                  {"valid": True, "category": "火警", "by": "接警员甲"})
        assert status == 200 and body["valid"] is True and body["category"] == "火警"
        status, body = yield call("POST", f"{base}/hotline/calls/nope/mark", {"valid": False, "category": "x", "by": "y"})
        assert status == 404 and "no hotline call nope" in body["error"]
        status, body = yield call("GET", f"{base}/hotline/callbacks")
        assert [c["call_id"] for c in body["callbacks"]] == ["1764482000.12"]
        status, body = yield call("POST", f"{base}/hotline/callbacks/1764482000.12/done", {"by": "接警员甲"})
        assert status == 200
        status, body = yield call("GET", f"{base}/hotline/callbacks")
        assert body["callbacks"] == []
        status, body = yield call("GET", f"{base}/hotline/figures")
        assert status == 200 and body["lines"]["119"]["calls"] == 1 and body["lines"]["119"]["valid"] == 1
        status, body = yield call("GET", f"{base}/hotline/figures?day=30-11-2026")
        assert status == 400 and "YYYY-MM-DD" in body["error"]
    finally:
        yield port.stopListening()
