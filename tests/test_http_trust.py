"""HTTP trust through the real stack (loopback TCP, both backends): every route by every kind of
caller, refusals audited, counted and braked, masking for read keys, the cross-origin POST, the
board's cookie, idempotency under a race, JSON 404/405, 503 on a database outage."""
import json
from datetime import datetime, timedelta, timezone

import pytest
import pytest_twisted
import treq
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, func, select, update
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks

from adapters.auth import COOKIE
from gateway.storage.schema import api_idempotency, api_keys, audit_log, hotline_calls, order_teams, orders
from tests._http_rig import CALL_ID, CALLER, ROSTER, start_rig

ORDER = {"incident_ref": "XJ-7", "kind": "rescue", "text": "白塔镇山体滑坡，请立即赶赴现场。",
         "target": "teams:PUB-07", "rule": "same_township"}
RANK = {"read": 0, "dispatch": 1, "admin": 2}


def refused(reason):
    return REGISTRY.get_sample_value("yihu_auth_refused_total", {"reason": reason}) or 0.0


def count(db, table, *where):
    return db.run(lambda c: c.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


@pytest.fixture
def rig(migrated_url, tmp_path):
    r = pytest_twisted.blockon(start_rig(migrated_url, tmp_path, http={"refusal_burst": 10000}))
    yield r
    pytest_twisted.blockon(r.stop())


def _cases(rig, codes):
    """(method, path, body, scope needed) for every route the gateway mounts."""
    return [
        ("GET", "/api/v1/teams", None, "read"),
        ("POST", "/api/v1/directory/import", {"format": "yaml", "content": ROSTER.read_text("utf-8")}, "admin"),
        ("POST", "/api/v1/orders", ORDER, "dispatch"),
        ("GET", "/api/v1/orders", None, "read"),
        ("GET", f"/api/v1/orders/{codes[0]}", None, "read"),
        ("POST", f"/api/v1/orders/{{code}}/close", {}, "dispatch"),
        ("GET", f"/api/v1/orders/{codes[0]}/teams/PUB-07/report", None, "read"),
        ("PUT", f"/api/v1/orders/{codes[0]}/teams/PUB-07/report", {"casualties": "无"}, "dispatch"),
        ("GET", "/api/v1/hotline/calls", None, "read"),
        ("GET", f"/api/v1/hotline/calls/{CALL_ID}", None, "read"),
        ("POST", f"/api/v1/hotline/calls/{CALL_ID}/mark", {"valid": True, "category": "火警"}, "dispatch"),
        ("GET", "/api/v1/hotline/callbacks", None, "read"),
        ("POST", f"/api/v1/hotline/callbacks/{CALL_ID}/done", {}, "dispatch"),
        ("GET", "/api/v1/hotline/figures", None, "read"),
        ("POST", "/api/v1/modems/emu0/pin", {}, "admin"),
        ("GET", "/openapi.json", None, "read"),
        ("GET", "/board", None, "read"),
        ("GET", "/events", None, "read"),
    ]


@inlineCallbacks
def _open_stream_code(rig, key):
    """The event stream answers headers and then stays open: read the status, then hang up."""
    resp = yield treq.get(f"{rig.root}/events", headers={"Authorization": f"Bearer {key}"}, unbuffered=True,
                          persistent=False)
    code, ctype = resp.code, resp.headers.getRawHeaders("content-type", [""])[0]
    resp.original._transport.stopProducing()
    return code, ctype


@pytest_twisted.inlineCallbacks
def test_every_route_by_every_caller(rig):
    codes = []
    for _ in range(2):
        status, body, _ = yield rig.call("POST", "/api/v1/orders", ORDER, key=rig.keys["admin"])
        assert status == 201, body
        codes.append(body["order_code"])
    # The team reported finished (the form follows "finished"): a dispatcher may fill its form.
    yield rig.db.run(lambda c: c.execute(update(order_teams).values(state="finished", finished_at=datetime.now(timezone.utc))))
    cases = _cases(rig, codes)
    # The table covers every route the gateway declares: a new route without a row fails here.
    declared = {(r.method, r.path) for r in rig.gw.api.declared()}
    covered = {(m, p.replace(codes[0], "{code}").replace(CALL_ID, "{call_id}").replace("PUB-07", "{team}")
                  .replace("/emu0/", "/{port}/"))
               for m, p, _, _ in cases}
    assert declared <= covered, declared - covered
    wrong = rig.keys["read"][:-4] + ("AAAA" if not rig.keys["read"].endswith("AAAA") else "BBBB")
    before = {r: refused(r) for r in ("missing_key", "bad_key", "scope")}
    expected_refusals = {"missing_key": 0, "bad_key": 0, "scope": 0}
    close_codes = iter(codes)
    for method, path, body, needed in cases:
        for who in ("none", "wrong", "malformed", "read", "dispatch", "admin"):
            key = {"none": None, "wrong": wrong, "malformed": "let-me-in"}.get(who, rig.keys.get(who))
            p = path.replace("{code}", next(close_codes) if who in ("dispatch", "admin") and needed == "dispatch"
                             and "{code}" in path and RANK[who] >= RANK[needed] else codes[0])
            allowed = who in RANK and RANK[who] >= RANK[needed]
            if path == "/events" and allowed:
                status, ctype = yield _open_stream_code(rig, key)
                assert status == 200 and ctype.startswith("text/event-stream")
                continue
            status, answer, resp = yield rig.call(method, p, body, key=key)
            what = (method, p, who, status, answer if isinstance(answer, dict) else answer[:200])
            if who in ("none", "wrong", "malformed"):
                assert status == 401 and answer["field"] == "Authorization", what
                assert answer["required_scope"] == needed, what
                expected_refusals["missing_key" if who == "none" else "bad_key"] += 1
            elif not allowed:
                assert status == 403 and answer["required_scope"] == needed and needed in answer["error"], what
                assert answer["key_scope"] == who, what
                expected_refusals["scope"] += 1
            else:
                assert status in (200, 201), what
    for reason, n in expected_refusals.items():
        assert refused(reason) - before[reason] == n, reason
    rows = yield rig.db.run(lambda c: c.execute(select(audit_log.c.actor, audit_log.c.detail)
                                                .where(audit_log.c.action == "http.refused")).all())
    assert len(rows) == sum(expected_refusals.values())
    assert all(r.actor == "http:127.0.0.1" for r in rows)
    assert {r.detail["key"] for r in rows if r.detail["reason"] == "scope"} == {"read-desk", "dispatch-desk"}
    # The author of what a key did is the key's name.
    authors = yield rig.db.run(lambda c: c.execute(select(orders.c.created_by)).scalars().all())
    assert set(authors) == {"api:admin-desk", "api:dispatch-desk"}
    marked = yield rig.db.run(lambda c: c.execute(select(hotline_calls.c.marked_by, hotline_calls.c.callback_by)).one())
    assert tuple(marked) == ("api:admin-desk", "api:admin-desk")
    used = yield rig.db.run(lambda c: c.execute(select(api_keys.c.name).where(api_keys.c.last_used_at.is_not(None)))
                            .scalars().all())
    assert sorted(used) == ["admin-desk", "dispatch-desk", "read-desk"]


@pytest_twisted.inlineCallbacks
def test_read_keys_see_numbers_masked_to_the_last_four_digits(rig):
    status, teams, _ = yield rig.call("GET", "/api/v1/teams?kind=professional", key=rig.keys["read"])
    phones = [t["commander"]["phone"] for t in teams["teams"]]
    assert status == 200 and all(p.startswith("****") and len(p) == 8 for p in phones)
    status, full, _ = yield rig.call("GET", "/api/v1/teams?kind=professional", key=rig.keys["dispatch"])
    assert [t["commander"]["phone"][-4:] for t in full["teams"]] == [p[-4:] for p in phones]
    assert all(t["commander"]["phone"].startswith("+44") for t in full["teams"])
    status, call, _ = yield rig.call("GET", f"/api/v1/hotline/calls/{CALL_ID}", key=rig.keys["read"])
    assert call["caller"] == "****" + CALLER[-4:]
    status, cbs, _ = yield rig.call("GET", "/api/v1/hotline/callbacks", key=rig.keys["read"])
    assert [c["caller"] for c in cbs["callbacks"]] == ["****" + CALLER[-4:]]
    status, call, _ = yield rig.call("GET", f"/api/v1/hotline/calls/{CALL_ID}", key=rig.keys["dispatch"])
    assert call["caller"] == CALLER
    # The board, opened once with ?key=: a cookie (HttpOnly, SameSite=Strict), then masked numbers.
    resp = yield treq.get(f"{rig.root}/board?key={rig.keys['read']}", allow_redirects=False)
    assert resp.code == 303 and resp.headers.getRawHeaders("location") == ["/board"]
    cookie = resp.headers.getRawHeaders("set-cookie")[0]
    assert cookie.startswith(COOKIE.decode() + "=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert rig.keys["read"] in cookie
    resp = yield treq.get(f"{rig.root}/board", cookies={COOKIE.decode(): rig.keys["read"]})
    page = yield resp.text("utf-8")
    assert resp.code == 200 and "****" + CALLER[-4:] in page and CALLER not in page
    resp = yield treq.get(f"{rig.root}/board", headers={"Authorization": f"Bearer {rig.keys['dispatch']}"})
    assert CALLER in (yield resp.text("utf-8"))
    # The cookie is for the board and the stream only: the API ignores it.
    status, body, _ = yield rig.call("GET", "/api/v1/teams", cookies={COOKIE.decode(): rig.keys["admin"]})
    assert status == 401
    resp = yield treq.get(f"{rig.root}/board?key=nonsense", allow_redirects=False)
    assert resp.code == 401 and not resp.headers.getRawHeaders("set-cookie")


@pytest_twisted.inlineCallbacks
def test_event_stream_masks_numbers_for_a_read_key(rig):
    from gateway.eventlog import record_event
    yield rig.db.run(record_event, "hotline.arrived", {"call_id": "c1", "caller": CALLER, "line": "110"})
    yield rig.db.run(record_event, "order.feedback", {"order_code": "0427", "phone": "+447700900019", "member": "甲"})
    for scope, want in (("read", ["****1234", "****0019"]), ("dispatch", [CALLER, "+447700900019"])):
        resp = yield treq.get(f"{rig.root}/events?since=0", headers={"Authorization": f"Bearer {rig.keys[scope]}"},
                              unbuffered=True, persistent=False)
        chunks, got = [], Deferred()

        def collect(data, chunks=chunks, got=got):
            chunks.append(data)
            if b"".join(chunks).count(b"\ndata: ") >= 2 and not got.called:
                got.callback(None)
        treq.collect(resp, collect).addErrback(lambda f: None)     # we hang up on the stream
        yield got
        resp.original._transport.stopProducing()
        frames = [json.loads(line[6:]) for line in b"".join(chunks).decode().splitlines() if line.startswith("data: ")]
        assert [f["payload"].get("caller") or f["payload"].get("phone") for f in frames] == want, scope


@pytest_twisted.inlineCallbacks
def test_cross_origin_text_plain_post_is_refused_even_when_open(migrated_url, tmp_path):
    rig = yield start_rig(migrated_url, tmp_path, embedded=True, keys=False)
    try:
        # What a web page in the wall-screen browser can send without a preflight.
        for ctype in ("text/plain", "application/x-www-form-urlencoded"):
            status, body, _ = yield rig.call("POST", "/api/v1/orders", raw=json.dumps(ORDER).encode(),
                                             headers={"Content-Type": ctype, "Origin": "http://evil.example"})
            assert status == 415 and body["field"] == "Content-Type", (ctype, body)
        status, body, _ = yield rig.call("POST", "/api/v1/orders", raw=json.dumps(ORDER).encode())
        assert status == 415
        assert (yield count(rig.db, orders)) == 0
        # The drill's own request (application/json, no key) is let in, as open:loopback.
        status, body, _ = yield rig.call("POST", "/api/v1/orders", ORDER)
        assert status == 201, body
        assert (yield rig.db.run(lambda c: c.execute(select(orders.c.created_by)).scalar_one())) == "open:loopback"
        status, health, _ = yield rig.call("GET", "/health")
        assert health["checks"]["api"]["detail"].startswith("OPEN")
        # Open does not mean admin: the directory import still needs an admin key.
        status, body, _ = yield rig.call("POST", "/api/v1/directory/import", {"format": "csv", "content": "x"})
        assert status == 401 and body["required_scope"] == "admin"
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_unknown_routes_and_methods_answer_json(rig):
    admin = rig.keys["admin"]
    for method, path, status, field in (("GET", "/nothing", 404, "path"), ("GET", "/api/v1/nothing", 404, "path"),
                                        ("DELETE", "/api/v1/orders", 405, "method"),
                                        ("POST", "/health", 405, "method"), ("PUT", "/metrics", 405, "method"),
                                        ("POST", "/board", 405, "method"), ("GET", "/health/x", 404, "path"),
                                        ("GET", "/api/v1/hotline/calls/1%00", 422, "call_id"),
                                        ("GET", "/api/v1/orders/%E7%81%AB", 422, "code")):
        got, body, resp = yield rig.call(method, path, key=admin)
        assert got == status and body["field"] == field, (method, path, got, body)
        assert resp.headers.getRawHeaders("content-type")[0].startswith("application/json")


@pytest_twisted.inlineCallbacks
def test_a_burst_of_refusals_is_braked(migrated_url, tmp_path):
    rig = yield start_rig(migrated_url, tmp_path, http={"refusal_burst": 3, "refusal_window_s": 60})
    try:
        before = refused("rate_limited")
        for _ in range(3):
            status, _, _ = yield rig.call("GET", "/api/v1/teams", key="yihu_000000000000_" + "A" * 43)
            assert status == 401
        for _ in range(5):
            status, body, resp = yield rig.call("GET", "/api/v1/teams", key=rig.keys["read"])
            assert status == 429 and body["field"] == "Authorization"
            assert 1 <= int(resp.headers.getRawHeaders("retry-after")[0]) <= 60
        assert refused("rate_limited") - before == 5
        # Braked refusals are counted, but written once per episode: 3 refusals + 1 "braked" row.
        rows = yield rig.db.run(lambda c: c.execute(select(audit_log.c.detail).where(
            audit_log.c.action == "http.refused").order_by(audit_log.c.id)).scalars().all())
        assert [r["reason"] for r in rows] == ["bad_key"] * 3 + ["rate_limited"]
        assert 1 <= rows[-1]["braked_for"] <= 60
        status, _, _ = yield rig.call("GET", "/health")
        assert status == 200                   # /health and /metrics stay reachable
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_idempotency_is_per_key_bound_to_the_body_and_kept_a_day(rig):
    dispatch, admin = rig.keys["dispatch"], rig.keys["admin"]
    h = {"Idempotency-Key": "inc-1"}
    # Two identical requests at once: one order, never a 500.
    results = yield gatherResults([rig.call("POST", "/api/v1/orders", ORDER, key=dispatch, headers=h)
                                   for _ in range(2)])
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 201], results
    assert results[0][1]["order_code"] == results[1][1]["order_code"]
    assert (yield count(rig.db, orders)) == 1
    status, body, _ = yield rig.call("POST", "/api/v1/orders", {**ORDER, "text": "另一条指令。"}, key=dispatch, headers=h)
    assert status == 422 and body["field"] == "Idempotency-Key" and "different request" in body["error"]
    # Another key's "inc-1" is its own.
    status, other, _ = yield rig.call("POST", "/api/v1/orders", ORDER, key=admin, headers=h)
    assert status == 201 and other["order_code"] != results[0][1]["order_code"]
    # A day later the key is forgotten.
    yield rig.db.run(lambda c: c.execute(update(api_idempotency).values(
        created_at=datetime.now(timezone.utc) - timedelta(hours=24, minutes=1))))
    status, later, _ = yield rig.call("POST", "/api/v1/orders", ORDER, key=dispatch, headers=h)
    assert status == 201 and (yield count(rig.db, orders)) == 3
    status, body, _ = yield rig.call("POST", "/api/v1/orders", ORDER, key=dispatch,
                                     headers={"Idempotency-Key": "k" * 101})
    assert status == 422 and body["field"] == "Idempotency-Key"


@pytest_twisted.inlineCallbacks
def test_a_database_outage_answers_503(rig, tmp_path):
    real = rig.db.engine
    rig.db.engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    try:
        status, body, resp = yield rig.call("GET", "/api/v1/teams", key=rig.keys["read"])
        assert status == 503 and body["field"] == "database", body
        assert resp.headers.getRawHeaders("retry-after") == ["5"]
        # A refusal needs no database: still 401 (its audit row is lost, and logged).
        status, body, resp = yield rig.call("GET", "/api/v1/teams")
        assert status == 401
    finally:
        rig.db.engine.dispose()
        rig.db.engine = real


def _readme_drill_curl():
    """The README's drill command, parsed as a shell would: (url, headers, data)."""
    import shlex
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
    start = readme.index("curl -s -XPOST localhost:8080/api/v1/orders")
    command = readme[start:readme.index("\nopen http", start)].replace("\\\n", " ")
    args = shlex.split(command)
    url = next(a for a in args if a.startswith("localhost:8080"))
    headers = dict(args[i + 1].split(": ", 1) for i, a in enumerate(args) if a == "-H")
    data = args[args.index("-d") + 1]
    assert "-XPOST" in args
    return url, headers, data.encode()


@pytest_twisted.inlineCallbacks
def test_the_readme_drill_request_works_as_written(migrated_url, tmp_path):
    url, headers, data = _readme_drill_curl()
    rig = yield start_rig(migrated_url, tmp_path, embedded=True, keys=False)
    try:
        path = url.removeprefix("localhost:8080")
        status, body, _ = yield rig.call("POST", path, raw=data, headers=headers)
        assert status == 201 and body["teams"] == 2, body
        status, again, _ = yield rig.call("POST", path, raw=data, headers=headers)
        assert status == 200 and again["order_code"] == body["order_code"]
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_no_key_reaches_the_log(rig):
    from twisted.logger import formatEvent, globalLogPublisher
    lines = []

    def observe(event):
        lines.append(formatEvent(event) if "log_format" in event else str(event.get("message", "")))
    globalLogPublisher.addObserver(observe)
    try:
        resp = yield treq.get(f"{rig.root}/board?key={rig.keys['read']}", allow_redirects=False)
        assert resp.code == 303
        yield rig.call("GET", "/api/v1/teams", key=rig.keys["admin"][:-1] + "x")
        yield rig.call("GET", "/api/v1/orders", key=rig.keys["read"])
        from twisted.internet.task import deferLater
        for _ in range(100):        # the access log is written after the answer (at most 5 s under load)
            if "/board?key=(hidden)" in "\n".join(lines) and "HTTP refused GET /api/v1/teams" in "\n".join(lines):
                break
            yield deferLater(reactor, 0.05, lambda: None)
    finally:
        globalLogPublisher.removeObserver(observe)
    text = "\n".join(lines)
    assert "/board?key=(hidden)" in text and "HTTP refused GET /api/v1/teams" in text
    for key in rig.keys.values():
        assert key.split("_", 2)[2][:20] not in text      # the secret part (it may hold "_" itself)


def test_the_brake_lets_a_peer_go_when_its_window_ends():
    from twisted.internet.task import Clock

    from adapters.auth import RefusalBrake
    clock = Clock()
    brake = RefusalBrake(clock, burst=3, window=60, peers=2)
    for _ in range(3):
        assert brake.braked("10.0.0.9") is None
        brake.note("10.0.0.9")
        clock.advance(1)
    assert brake.braked("10.0.0.9") == pytest.approx(57)     # the first refusal (t=0) leaves at 60
    assert brake.braked("10.0.0.10") is None            # another peer is not braked
    clock.advance(57.5)
    assert brake.braked("10.0.0.9") is None              # the first refusal left the window
    brake.note("a"), brake.note("b"), brake.note("c")
    assert len(brake._seen) == 2                          # a spray of addresses is bounded


@pytest_twisted.inlineCallbacks
def test_identical_requests_to_two_gateways_at_once_make_one_order(rig, tmp_path):
    """Two gateways on one database (no shared lock): the unique idempotency row decides."""
    twin = yield start_rig(rig.gw.database.url, tmp_path / "twin", keys=False, seed=False)
    try:
        for attempt in range(3):
            h = {"Idempotency-Key": f"twin-{attempt}"}
            results = yield gatherResults([r.call("POST", "/api/v1/orders", ORDER, key=rig.keys["dispatch"],
                                                  headers=h) for r in (rig, twin)])
            assert sorted(r[0] for r in results) == [200, 201], results
            assert results[0][1]["order_code"] == results[1][1]["order_code"]
        assert (yield count(rig.db, orders)) == 3
    finally:
        yield twin.stop()


@pytest_twisted.inlineCallbacks
def test_a_huge_body_is_refused_before_it_is_spooled(rig):
    status, body, _ = yield rig.call("POST", "/api/v1/orders", raw=b"x" * (65 * 1024), key=rig.keys["dispatch"],
                                     headers={"Content-Type": "application/json"})
    assert status == 413 and body["field"] == "body"
    failed = []
    yield treq.post(f"{rig.api}/orders", data=b"x" * (5 * 1024 * 1024), persistent=False,
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {rig.keys['dispatch']}"}
                    ).addCallbacks(lambda r: failed.append(r.code), failed.append)
    assert failed and not isinstance(failed[0], int), failed      # dropped, not answered
    status, _, _ = yield rig.call("GET", "/health")
    assert status == 200
