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
from adapters.directory_api import add_directory_routes
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster

ROSTER = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "roster.yaml"


def api(router):
    root = Resource()
    root.putChild(b"api", ApiResource(router))
    return StubTreq(root)


@pytest_twisted.inlineCallbacks
def test_teams_lists_commanders_and_deputies(database):
    yield database.run(import_roster, read_roster(ROSTER), source="t", actor="test")
    router = Router()
    add_directory_routes(router, database)
    root = Resource()
    root.putChild(b"api", ApiResource(router))
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
    assert resp.code == 400 and "kind must be" in json.loads((yield resp.content()))["error"]


@pytest_twisted.inlineCallbacks
def test_errors_are_json_and_name_the_problem():
    router = Router()
    router.add("POST", "/orders", lambda req: (201, req.body))
    client = api(router)
    resp = yield client.get("http://gw/api/v1/nothing")
    assert resp.code == 404 and "no such resource: /nothing" in json.loads((yield resp.content()))["error"]
    resp = yield client.get("http://gw/api/v1/orders")
    body = json.loads((yield resp.content()))
    assert resp.code == 405 and body["allowed"] == ["POST"]
    resp = yield client.post("http://gw/api/v1/orders", data=b"{not json")
    assert resp.code == 400 and "not JSON" in json.loads((yield resp.content()))["error"]
    resp = yield client.post("http://gw/api/v1/orders", data=b"[1, 2]")
    assert resp.code == 400 and "JSON object" in json.loads((yield resp.content()))["error"]
    resp = yield client.post("http://gw/api/v1/orders", data=b"x" * (65 * 1024))
    assert resp.code == 413
    resp = yield client.post("http://gw/api/v1/orders", data=json.dumps({"a": "火"}).encode())
    assert resp.code == 201 and json.loads((yield resp.content())) == {"a": "火"}
