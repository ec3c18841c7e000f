"""The order caller: Originate through IOriginator, reason mapping, retries, deliveries rows."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, insert, select
from sqlalchemy.pool import StaticPool
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gateway import metrics
from gateway.interfaces import IOrderCaller, IOriginator, OriginateResult
from gateway.storage.schema import deliveries, metadata, orders, teams
from ivr.order_caller import OrderCaller, RetryPolicy, outcome_of

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)


class SyncDb:
    """The Database API, run synchronously on in-memory SQLite, so a Clock can drive the caller."""

    def __init__(self):
        self.engine = create_engine("sqlite://", poolclass=StaticPool,
                                    connect_args={"check_same_thread": False})
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            conn.execute(insert(teams).values(id=3, code="PUB-03", name="城关镇", kind="public", created_at=NOW))
            conn.execute(insert(orders).values(id=1, code="0427", incident_ref="INC-1", kind="rescue", text="t",
                                               rule="same_township", voice=True, state="open", created_at=NOW))

    def run(self, fn, *args):
        with self.engine.begin() as conn:
            return succeed(fn(conn, *args))

    def delivery(self):
        with self.engine.begin() as conn:
            return conn.execute(select(deliveries)).one()


@implementer(IOriginator)
class FakeOriginator:
    def __init__(self, *results):
        self.results = list(results)
        self.calls = []

    def originate(self, channel, *, context, exten, priority=1, variables=None, channel_id=None,
                  caller_id=None, timeout_ms=30000):
        self.calls.append(dict(channel=channel, context=context, exten=exten, priority=priority,
                               variables=variables, channel_id=channel_id, caller_id=caller_id,
                               timeout_ms=timeout_ms))
        r = self.results.pop(0)
        return fail(r) if isinstance(r, Exception) else succeed(r)


def res(reason, success=None):
    return OriginateResult(success=(reason == 4) if success is None else success, reason=reason)


def make(*results, policy=RetryPolicy()):
    clock, db, orig = Clock(), SyncDb(), FakeOriginator(*results)
    clock.advance(NOW.timestamp())
    return clock, db, orig, OrderCaller(clock, orig, db, policy=policy)


def call(caller):
    out = []
    caller.call_order("0427", "+8613805761234", order_id=1, team_id=3, member_id=None).addBoth(out.append)
    return out


@pytest.mark.parametrize("reason,outcome", [(4, "answered"), (5, "busy"), (3, "no_answer"),
                                            (0, "failed"), (1, "failed"), (8, "failed"), (2, "failed")])
def test_reason_mapping(reason, outcome):
    assert outcome_of(res(reason)) == outcome


def test_answered_at_once_with_our_channel_id_and_the_order_code():
    clock, db, orig, caller = make(res(4))
    assert verifyObject(IOrderCaller, caller)
    before = metrics.ORDER_CALLS.labels("answered")._value.get()
    assert call(caller) == ["answered"]
    [c] = orig.calls
    assert (c["context"], c["exten"], c["channel_id"]) == ("gateway-out", "order", "yihu-order-0427-1-1")
    assert c["variables"] == {"ORDER_CODE": "0427", "YIHU_PHONE": "+8613805761234", "YIHU_DELIVERY": "1"}
    assert c["channel"] == "PJSIP/13805761234@trunk"       # dialled as inside China
    d = db.delivery()
    assert (d.channel, d.state, d.attempts, d.phone) == ("voice", "answered", 1, "+8613805761234")
    assert metrics.ORDER_CALLS.labels("answered")._value.get() == before + 1


def test_busy_line_is_retried_after_the_delay():
    clock, db, orig, caller = make(res(5), res(5), res(4))
    out = call(caller)
    assert len(orig.calls) == 1 and out == []
    assert db.delivery().state == "busy"                # the attempt is on record while we wait
    clock.advance(59)
    assert len(orig.calls) == 1
    clock.advance(1)
    assert len(orig.calls) == 2
    clock.advance(60)
    assert out == ["answered"]
    d = db.delivery()
    assert d.attempts == 3 and d.state == "answered"
    assert [ln.split(": ", 1)[1].split(" (")[0] for ln in d.detail.splitlines()] == ["busy", "busy", "answered"]
    assert [c["channel_id"] for c in orig.calls] == ["yihu-order-0427-1-1", "yihu-order-0427-1-2",
                                                     "yihu-order-0427-1-3"]


def test_busy_every_time_gives_busy_after_all_attempts():
    clock, db, orig, caller = make(res(5), res(5), res(5))
    out = call(caller)
    clock.pump([60, 60])
    assert out == ["busy"] and db.delivery().attempts == 3


def test_outcomes_outside_the_policy_are_not_retried():
    clock, db, orig, caller = make(res(3), res(4), policy=RetryPolicy(retry_on=frozenset({"busy"})))
    assert call(caller) == ["no_answer"] and len(orig.calls) == 1


def test_ami_failure_is_a_failed_attempt_and_retried():
    clock, db, orig, caller = make(ConnectionError("AMI down"), res(8), res(4),
                                   policy=RetryPolicy(attempts=3, delay=5))
    out = call(caller)
    clock.pump([5, 5])
    assert out == ["answered"]
    assert "originate: ConnectionError" in db.delivery().detail and "reason 8" in db.delivery().detail


def test_policy_defaults():
    p = RetryPolicy()
    assert (p.attempts, p.delay, p.retry_on) == (3, 60.0, frozenset({"busy", "no_answer", "failed"}))


def test_no_answer_from_the_flow_survives_the_answered_attempt_in_either_order():
    from ivr.journal import KeypadEntry, _insert_no_answer
    from ivr.order_caller import _attempted, _new_delivery
    for flow_first in (True, False):
        db = SyncDb()
        did = db.run(_new_delivery, 1, 3, None, "+8613805761234", NOW).result
        entry = KeypadEntry(call_id="c", caller=None, digits="", script="order", state="parsed",
                            order_code="0427", delivery_id=did, note="no answer: no key pressed 2 times",
                            received_at=NOW)
        steps = [lambda: db.run(_insert_no_answer, entry),
                 lambda: db.run(_attempted, did, 1, "answered", "attempt 1: answered", NOW)]
        for step in (steps if flow_first else steps[::-1]):
            step()
        d = db.delivery()
        assert d.state == "no_answer" and d.attempts == 1
        assert sorted(d.detail.splitlines()) == ["attempt 1: answered", "no answer: no key pressed 2 times"]


def recorded_originate_response(name):
    """The OriginateResponse event of a recorded AMI session, as an OriginateResult."""
    import json
    from tests._paths import asterisk
    text = "".join(json.loads(ln)["data"] for ln in asterisk(f"{name}.ami.jsonl")
                   .read_text().splitlines() if ln.strip() and json.loads(ln)["dir"] == "<")
    for block in text.replace("\r\n", "\n").split("\n\n"):
        headers = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if headers.get("Event") == "OriginateResponse":
            return OriginateResult(success=headers["Response"] == "Success", reason=int(headers["Reason"]),
                                   uniqueid=headers.get("Uniqueid"), headers=headers)
    raise AssertionError(f"no OriginateResponse in {name}")


@pytest.mark.parametrize("name,outcome", [("order-call-busy", "busy"), ("order-call-nosuch", "failed"),
                                          ("order-call-press1", "answered"), ("order-call-silent", "answered")])
def test_recorded_originate_responses_map_to_outcomes(name, outcome):
    assert outcome_of(recorded_originate_response(name)) == outcome


def test_recorded_busy_line_then_answer():
    busy = recorded_originate_response("order-call-busy")
    answered = recorded_originate_response("order-call-prompts")
    clock, db, orig, caller = make(busy, answered, policy=RetryPolicy(attempts=2, delay=30))
    out = call(caller)
    assert db.delivery().state == "busy" and "reason 5" in db.delivery().detail
    clock.advance(30)
    assert out == ["answered"] and db.delivery().attempts == 2


def test_dial_string_formats():
    from ivr.order_caller import national
    assert national("+8613805761234") == "13805761234"
    assert national("+8657687770110") == "057687770110"
