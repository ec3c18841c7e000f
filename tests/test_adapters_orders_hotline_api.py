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
from adapters.auth import Authenticator
from tests._orders_rig import FakeEvents
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
    bus = FakeEvents()
    database.add_event_listener(bus.committed)
    orders = OrderService(database, reactor, None, None)
    router = Router()
    add_order_routes(router, database, orders, reactor)
    add_hotline_routes(router, database, "Asia/Shanghai")
    root = Resource()
    root.putChild(b"api", ApiResource(router, Authenticator(reactor, database, open_access=True)))
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
        assert [k for k, _ in bus.events] == ["order.created"]
        status, s = yield call("GET", f"{base}/orders/{code}")
        assert status == 200 and s["onscene_commander"].startswith("县公安局局长")     # stability: the police chief
        assert len(s["teams"]) == 16 and s["sent_at"].endswith("+00:00") and "T" in s["sent_at"]
        status, listing = yield call("GET", f"{base}/orders")
        assert [o["order_code"] for o in listing["orders"]] == [code]
        status, err = yield call("POST", f"{base}/orders/{code}/close", {"by": "值班长"})
        assert status == 422 and err["field"] == "by"        # the author is never the body's word
        status, closed = yield call("POST", f"{base}/orders/{code}/close", {})
        assert status == 200 and closed["state"] == "closed"
        status, listing = yield call("GET", f"{base}/orders")
        assert listing["orders"] == []
        status, err = yield call("POST", f"{base}/orders/{code}/close", {})
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
        assert [p["drill"] for p in bus.of("order.created")] == [True, False]
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_bad_orders_are_refused_with_the_reason(database):
    port, base, bus = yield serve(database)
    try:
        cases = [
            ({**GOOD, "kind": "war"}, 422, "kind: must be one of"),
            ({**GOOD, "rule": "fast"}, 422, "rule: must be one of"),
            ({k: v for k, v in GOOD.items() if k != "text"}, 422, "text: missing"),
            ({**GOOD, "target": "squad:1"}, 422, "target 'squad:1'"),
            ({**GOOD, "target": 7}, 422, "target: must be text or an object"),
            ({**GOOD, "target": "teams:NOPE-1"}, 422, "no team matches target teams:NOPE-1"),
            ({**GOOD, "text": "   "}, 422, "text: must not be empty"),
            ({**GOOD, "voice": "false"}, 422, "voice: must be true or false"),
            ({**GOOD, "created_by": "someone"}, 422, "created_by: unknown field"),
            ({**GOOD, "incident_ref": "X" * 101}, 422, "incident_ref: at most 100 characters"),
            ({**GOOD, "drill": "yes"}, 422, "drill: must be true or false"),
        ]
        for body, status, fragment in cases:
            got_status, got = yield call("POST", f"{base}/orders", body)
            assert got_status == status and fragment in got["error"], (body, got_status, got)
        # 600 UCS-2 characters alone need 9 parts of 67: refused with the count.
        status, got = yield call("POST", f"{base}/orders", {**GOOD, "text": "火" * 600})
        assert status == 422 and got["field"] == "text" and got["sms_parts"] >= 9
        assert f"SMS would need {got['sms_parts']} parts; at most 8 (orders.max_sms_parts)" in got["error"]
        status, got = yield call("POST", f"{base}/orders", {**GOOD, "text": "火" * 400, "target": "teams:PUB-01"})
        assert status == 201, got                          # 400 + the frame fit in 8 x 67
        status, _ = yield call("GET", f"{base}/orders/9999")
        assert status == 404
        assert [k for k, _ in bus.events] == ["order.created"]     # only the one that fits
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
        assert status == 422 and body["field"] == "valid" and "must be true or false" in body["error"]
        status, body = yield call("POST", f"{base}/hotline/calls/1764482000.12/mark",
                                  {"valid": True, "category": "火警", "by": "接警员甲"})
        assert status == 422 and body["field"] == "by"
        status, body = yield call("POST", f"{base}/hotline/calls/1764482000.12/mark", {"valid": True, "category": "火警"})
        assert status == 200 and body["valid"] is True and body["category"] == "火警"
        assert body["marked_by"] == "open:loopback"
        status, body = yield call("POST", f"{base}/hotline/calls/nope/mark", {"valid": False, "category": "x"})
        assert status == 404 and "no hotline call nope" in body["error"]
        status, body = yield call("GET", f"{base}/hotline/callbacks")
        assert [c["call_id"] for c in body["callbacks"]] == ["1764482000.12"]
        status, body = yield call("POST", f"{base}/hotline/callbacks/1764482000.12/done", {})
        assert status == 200
        status, body = yield call("GET", f"{base}/hotline/callbacks")
        assert body["callbacks"] == []
        status, body = yield call("GET", f"{base}/hotline/figures")
        assert status == 200 and body["lines"]["119"]["calls"] == 1 and body["lines"]["119"]["valid"] == 1
        status, body = yield call("GET", f"{base}/hotline/figures?day=30-11-2026")
        assert status == 422 and body["field"] == "day"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_drill_orders_label_counts_against_the_part_limit(database):
    """【演练】 rides on every SMS of a drill order: the part limit is judged with it, so an order
    that fits only without the label is refused, not sent in more parts than allowed."""
    port, base, _ = yield serve(database)
    try:
        team = {**GOOD, "target": "teams:PUB-01"}

        def fits(n, drill=False):
            body = {**team, "text": "火" * n, "incident_ref": f"XJ-{n:04d}{'D' if drill else 'R'}", **({"drill": True} if drill else {})}
            return call("POST", f"{base}/orders", body).addCallback(lambda r: r[0] == 201)
        # The longest text that fits 8 parts as a real order, found through the API alone.
        lo, hi = 1, 600                                 # 1 fits, 600 does not (the test above)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if (yield fits(mid)):
                lo = mid
            else:
                hi = mid
        label = len("【演练】")
        assert (yield fits(lo - label, drill=True))          # with the label, exactly as long
        assert not (yield fits(lo - label + 1, drill=True))  # one more character: a ninth part
    finally:
        yield port.stopListening()
