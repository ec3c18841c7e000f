"""The REST API as dispatch software uses it (in memory, through treq's StubTreq)."""
import json
from pathlib import Path

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.web.server import Site
from treq.testing import StubTreq
from twisted.web.resource import Resource

from adapters.api import ApiResource, Router
from adapters.auth import Authenticator
from adapters.contract import text
from adapters.directory_api import add_directory_routes
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster

ROSTER = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "roster.yaml"


def open_api(router, database=None):
    """The API as the drill runs it: open on loopback, no key."""
    root = Resource()
    root.putChild(b"api", ApiResource(router, Authenticator(reactor, database, open_access=True)))
    return root


def api(router):
    return StubTreq(open_api(router))


@pytest_twisted.inlineCallbacks
def test_teams_lists_commanders_and_deputies(database):
    yield database.run(import_roster, read_roster(ROSTER), source="t", actor="test")
    router = Router()
    add_directory_routes(router, database)
    root = open_api(router, database)
    # The database answers from its own threads, so this one goes over real loopback HTTP.
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}"
    try:
        yield _teams_checks(base)
    finally:
        yield port.stopListening()


@inlineCallbacks
def _teams_checks(base):
    client = treq
    resp = yield client.get(f"{base}/api/v1/teams?kind=professional")
    body = json.loads((yield resp.content()))
    assert resp.code == 200 and body["count"] == 16
    assert all(t["commander"]["phone"].startswith("+44") and t["deputies"] for t in body["teams"])
    resp = yield client.get(f"{base}/api/v1/teams?kind=navy")
    body = json.loads((yield resp.content()))
    assert resp.code == 422 and body["field"] == "kind" and "must be one of" in body["error"]


@pytest_twisted.inlineCallbacks
def test_errors_are_json_and_name_the_problem():
    router = Router()
    router.add("POST", "/orders", lambda req: (201, req.body), scope="dispatch", body=(text("a", 10),))
    client = api(router)
    js = {"Content-Type": "application/json"}

    @inlineCallbacks
    def post(data, headers=js):
        resp = yield client.post("http://gw/api/v1/orders", data=data, headers=headers)
        return resp.code, json.loads((yield resp.content()))
    resp = yield client.get("http://gw/api/v1/nothing")
    assert resp.code == 404 and "no such resource: /api/v1/nothing" in json.loads((yield resp.content()))["error"]
    resp = yield client.get("http://gw/api/v1/orders")
    body = json.loads((yield resp.content()))
    assert resp.code == 405 and body["allowed"] == ["POST"] and body["field"] == "method"
    assert (yield post(b"{not json"))[0] == 400
    assert (yield post(b"[1, 2]")) == (400, {"error": "request body must be a JSON object", "field": "body"})
    assert (yield post(b"x" * (65 * 1024)))[0] == 413
    assert (yield post(json.dumps({"a": "火"}).encode())) == (201, {"a": "火"})
    assert (yield post(json.dumps({"a": "火"}).encode(), {"Content-Type": "text/plain"}))[0] == 415
    status, body = yield post(b'{"a": "x", "a": "y"}')
    assert status == 422 and body["field"] == "a" and "twice" in body["error"]
    status, body = yield post(b'{"a": "\\ud800"}')
    assert status == 422 and body["field"] == "a" and "surrogate" in body["error"]
    status, body = yield post(b'{"a": "x\\u0000"}')
    assert status == 422 and body["field"] == "a" and "NUL" in body["error"]
    status, body = yield post(b'{"a": NaN}')
    assert status == 422 and "NaN" in body["error"]
    status, body = yield post(json.dumps({"a": "x" * 11}).encode())
    assert status == 422 and body["field"] == "a" and "at most 10 characters" in body["error"]
    status, body = yield post(json.dumps({"b": 1}).encode())
    assert status == 422 and body["field"] == "b" and "unknown field" in body["error"]
