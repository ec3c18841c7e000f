"""Hypothesis property tests of the order and hotline-mark request bodies, through the real HTTP
stack on both backends: whatever the body, the answer is a 201/200 that stored exactly what was
sent, or a 422 naming a field of it; never anything else.  Each test's oracle is its own code,
not the API's declarations.  Fixed examples, derandomized: the same run every time."""
import json
import re

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select
from twisted.internet import reactor, threads

from gateway.storage.schema import hotline_calls, orders
from tests._http_rig import CALL_ID, start_rig

SETTINGS = settings(max_examples=100, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
KINDS, RULES = ("stability", "rescue", "ordinary"), ("same_township", "leaving_city")

# Text of every sort, lone surrogates and NUL included (they travel as JSON \u escapes).
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0xFFFF, exclude_categories=()), max_size=120)
good_line = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x9FFF, exclude_categories=("Cs", "Cc")),
                    min_size=1, max_size=100).filter(lambda s: s.strip())
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                     max_size=3), max_leaves=5)


def _clean_text(v, limit, multiline=False):
    if not isinstance(v, str) or not v.strip() or len(v) > limit:
        return False
    if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
        return False
    bad = [c for c in CONTROL.findall(v) if not (multiline and c in "\t\n\r")]
    return not bad


def order_acceptable(b) -> bool:
    """My own reading of the contract (README): which bodies must be accepted."""
    allowed = {"incident_ref", "kind", "text", "target", "rule", "voice", "onscene_name"}
    required = {"incident_ref", "kind", "text", "target", "rule"}
    if not isinstance(b, dict) or not required <= set(b) or set(b) - allowed:
        return False
    return (_clean_text(b["incident_ref"], 100) and b["kind"] in KINDS and _clean_text(b["text"], 1000, True)
            and b["target"] in ("all", "teams:PUB-01", "kind:expert") and b["rule"] in RULES
            and isinstance(b.get("voice", False), bool)
            and ("onscene_name" not in b or _clean_text(b["onscene_name"], 60)))


order_bodies = st.fixed_dictionaries(
    {"incident_ref": st.one_of(good_line, any_text, json_value), "kind": st.one_of(st.sampled_from(KINDS), json_value),
     "text": st.one_of(good_line, any_text, json_value), "target": st.sampled_from(["all", "teams:PUB-01", "kind:expert"])
     | json_value, "rule": st.sampled_from(RULES) | json_value},
    optional={"voice": st.booleans() | json_value, "onscene_name": good_line | json_value,
              "created_by": any_text, "by": any_text})


@pytest.fixture
def rig(migrated_url, tmp_path):
    r = pytest_twisted.blockon(start_rig(migrated_url, tmp_path))
    yield r
    pytest_twisted.blockon(r.stop())


def post(rig, path, body):
    """From Hypothesis's thread: one request through the reactor, waited for."""
    raw = json.dumps(body, ensure_ascii=True).encode()      # lone surrogates travel as \ud800
    return threads.blockingCallFromThread(reactor, rig.call, "POST", path, raw=raw, key=rig.keys["dispatch"],
                                          headers={"Content-Type": "application/json"})


def query(rig, fn):
    return threads.blockingCallFromThread(reactor, rig.db.run, fn)


def field_of(body, name) -> bool:
    top = re.split(r"[.\[]", name)[0]
    return top in body or top in ("incident_ref", "kind", "text", "target", "rule", "valid", "category")


@pytest_twisted.inlineCallbacks
def test_order_bodies(rig):
    seen = []

    @SETTINGS
    @given(order_bodies)
    def check(body):
        status, answer, _ = post(rig, "/api/v1/orders", body)
        seen.append(status)
        if order_acceptable(body):
            assert status == 201, (body, answer)
            row = query(rig, lambda c: c.execute(
                select(orders).where(orders.c.code == answer["order_code"], orders.c.state == "open")).one())
            assert (row.incident_ref, row.text, row.kind, row.rule, row.voice, row.created_by) == (
                body["incident_ref"].strip(), body["text"].strip(), body["kind"], body["rule"],
                body.get("voice", False), "api:dispatch-desk")
        else:
            assert status == 422, (body, status, answer)
            assert isinstance(answer["field"], str) and field_of(body, answer["field"]), (body, answer)
    yield threads.deferToThread(check)      # Hypothesis drives from a thread; the reactor serves
    assert len(seen) >= 100 and {200, 201} & set(seen) and 422 in seen, seen    # both sides were exercised


@pytest_twisted.inlineCallbacks
def test_hotline_mark_bodies(rig):
    seen = []

    @SETTINGS
    @given(st.fixed_dictionaries({}, optional={"valid": st.booleans() | json_value,
                                               "category": good_line.map(lambda s: s[:80]) | any_text | json_value,
                                               "by": any_text}))
    def check(body):
        status, answer, _ = post(rig, f"/api/v1/hotline/calls/{CALL_ID}/mark", body)
        seen.append(status)
        ok = (set(body) == {"valid", "category"} and isinstance(body["valid"], bool)
              and _clean_text(body["category"], 80))
        if ok:
            assert status == 200, (body, answer)
            row = query(rig, lambda c: c.execute(
                select(hotline_calls.c.valid, hotline_calls.c.category, hotline_calls.c.marked_by)).one())
            assert tuple(row) == (body["valid"], body["category"].strip(), "api:dispatch-desk")
        else:
            assert status == 422 and field_of(body, answer["field"]), (body, status, answer)
    yield threads.deferToThread(check)      # Hypothesis drives from a thread; the reactor serves
    assert len(seen) >= 100 and {200, 201} & set(seen) and 422 in seen, seen    # both sides were exercised
