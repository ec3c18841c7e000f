"""The order caller: Originate through IOriginator, reason mapping, retries, deliveries rows, and
the durable attempts (call_attempts): waiting for the link, reconciliation after a restart, stop
when the team answered or the order closed."""
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
from gateway.storage.schema import call_attempts, deliveries, metadata, order_teams, orders, teams
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

    def run(self, fn, *args, **kw):
        with self.engine.begin() as conn:
            return succeed(fn(conn, *args, **kw))

    def delivery(self):
        with self.engine.begin() as conn:
            return conn.execute(select(deliveries)).one()

    def attempts(self):
        with self.engine.begin() as conn:
            return [r._asdict() for r in conn.execute(select(call_attempts).order_by(call_attempts.c.id))]


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
    assert (c["context"], c["exten"], c["channel_id"]) == ("gateway-out", "order", "yihu-order-0427-1")
    assert c["variables"] == {"ORDER_CODE": "0427", "YIHU_PHONE": "+8613805761234", "YIHU_DELIVERY": "1"}
    assert c["channel"] == "PJSIP/13805761234@trunk"       # dialled as inside China
    d = db.delivery()
    assert (d.channel, d.state, d.attempts, d.phone) == ("voice", "answered", 1, "+8613805761234")
    assert metrics.ORDER_CALLS.labels("answered")._value.get() == before + 1


def test_busy_line_is_retried_after_the_delay():
    clock, db, orig, caller = make(res(5), res(5), res(4))
    out = call(caller)
    assert len(orig.calls) == 1 and out == []
    # the attempt is on record while we wait, and the next one is committed with it
    assert db.delivery().state == "calling" and "busy" in db.delivery().detail
    assert [(a["state"], a["attempt"]) for a in db.attempts()] == [("busy", 1), ("due", 2)]
    clock.advance(59)
    assert len(orig.calls) == 1
    clock.advance(1)
    assert len(orig.calls) == 2
    clock.advance(60)
    assert out == ["answered"]
    d = db.delivery()
    assert d.attempts == 3 and d.state == "answered"
    assert [ln.split(": ", 1)[1].split(" (")[0] for ln in d.detail.splitlines()] == ["busy", "busy", "answered"]
    assert [c["channel_id"] for c in orig.calls] == ["yihu-order-0427-1", "yihu-order-0427-2",
                                                     "yihu-order-0427-3"]


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
    assert (p.attempts, p.delay, p.retry_on) == (3, 60.0, frozenset({"busy", "no_answer", "failed", "unknown"}))


def test_no_answer_from_the_flow_survives_the_answered_attempt_in_either_order():
    from ivr import call_store as cs
    from ivr.journal import KeypadEntry, _insert_no_answer
    from ivr.order_caller import stage_call_tx
    for flow_first in (True, False):
        db = SyncDb()
        aid = db.run(stage_call_tx, NOW, order_id=1, team_id=3, member_id=None, phone="+8613805761234", purpose="order").result
        db.run(cs.claim_due_tx, NOW, 10)
        did = db.delivery().id
        entry = KeypadEntry(call_id="c", caller=None, digits="", script="order", state="parsed",
                            order_code="0427", delivery_id=did, note="no answer: no key pressed 2 times",
                            received_at=NOW)
        steps = [lambda: db.run(_insert_no_answer, entry),
                 lambda: db.run(cs.finish_tx, aid, "answered", "answered", NOW, 3, frozenset(), 0)]
        for step in (steps if flow_first else steps[::-1]):
            step()
        d = db.delivery()
        assert d.state == "no_answer" and d.attempts == 1
        assert sorted(ln.split(": ", 1)[-1] for ln in d.detail.splitlines()) == [
            "answered", "no key pressed 2 times"]


class LinkDown(FakeOriginator):
    """An AMI link that is down until told otherwise, with Asterisk's channel list."""

    def __init__(self, *results):
        super().__init__(*results)
        self.connected = False
        self.channels = []
        self.listeners = []

    def add_event_listener(self, fn):
        pass

    def add_connect_listener(self, fn):
        self.listeners.append(fn)

    def up(self):
        self.connected = True
        for fn in self.listeners:
            fn(True)

    def send_action(self, action, headers=(), timeout=None):
        from types import SimpleNamespace
        assert action == "CoreShowChannels"
        return succeed(SimpleNamespace(events=[{"Uniqueid": u, "ChannelState": s} for u, s in self.channels]))


def test_attempts_wait_for_the_link_instead_of_being_spent():
    clock, db, _, _ = make()
    orig = LinkDown(res(4))
    caller = OrderCaller(clock, orig, db, policy=RetryPolicy(attempts=1))
    out = call(caller)
    clock.advance(120)                        # two minutes of Asterisk outage
    caller.place_due()
    assert orig.calls == [] and [a["state"] for a in db.attempts()] == ["due"]
    orig.up()
    assert out == ["answered"] and len(orig.calls) == 1


def test_link_lost_before_the_originate_left_keeps_the_attempt():
    from gateway.ami.protocol import AmiNotConnected
    clock, db, orig, caller = make(AmiNotConnected("down"), res(4), policy=RetryPolicy(attempts=1))
    out = call(caller)
    a = db.attempts()
    assert [(x["state"], x["attempt"], x["channel_id"]) for x in a] == [("due", 1, None)] and out == []
    clock.advance(1)
    caller.place_due()
    assert out == ["answered"] and db.attempts()[0]["attempt"] == 1


def _restarted_with_attempt_in_flight(state="placing"):
    from ivr import call_store as cs
    from ivr.order_caller import stage_call_tx
    db = SyncDb()
    db.run(stage_call_tx, NOW, order_id=1, team_id=3, member_id=None, phone="+8613805761234", purpose="order")
    [a], _ = db.run(cs.claim_due_tx, NOW, 10).result       # the previous run placed it, then died
    if state == "ringing":
        db.run(cs.ringing_tx, a.id, NOW)
    clock = Clock()
    clock.advance(NOW.timestamp() + 5)
    link = LinkDown(res(4))
    caller = OrderCaller(clock, link, db, policy=RetryPolicy(attempts=3, delay=10))
    return clock, db, link, caller, a


def test_restart_with_the_channel_gone_records_unknown_and_retries():
    clock, db, link, caller, a = _restarted_with_attempt_in_flight()
    link.up()                                      # reconciliation: CoreShowChannels lists nothing
    got = db.attempts()
    assert [(x["state"], x["attempt"]) for x in got] == [("unknown", 1), ("due", 2)]
    assert "gone at reconciliation" in got[0]["detail"]
    clock.advance(10)
    assert [c["channel_id"] for c in link.calls] == [f"yihu-order-0427-{got[1]['id']}"]
    assert [x["state"] for x in db.attempts()] == ["unknown", "answered"]
    assert db.delivery().state == "answered"


def test_restart_with_the_channel_still_up_follows_it_without_calling_again():
    from gateway.ami.message import AmiMessage
    clock, db, link, caller, a = _restarted_with_attempt_in_flight("ringing")
    link.channels = [(a.channel_id, "5")]        # still ringing at Asterisk
    link.up()
    assert [x["state"] for x in db.attempts()] == ["ringing"] and link.calls == []
    caller._ami_event(AmiMessage([("Event", "Newstate"), ("Uniqueid", a.channel_id), ("ChannelState", "6")]))
    assert [x["state"] for x in db.attempts()] == ["answered"] and link.calls == []
    assert db.delivery().state == "answered"


def test_no_more_attempts_once_the_team_answered_or_the_order_closed():
    from sqlalchemy import update
    for how in ("answered", "closed"):
        clock, db, orig, caller = make(res(5), res(4), policy=RetryPolicy(attempts=3, delay=10))
        out = call(caller)
        with db.engine.begin() as conn:
            if how == "answered":
                conn.execute(insert(order_teams).values(order_id=1, team_id=3, state="received", state_at=NOW))
            else:
                conn.execute(update(orders).values(state="closed"))
        clock.advance(10)
        assert len(orig.calls) == 1 and out == ["cancelled"]
        assert [x["state"] for x in db.attempts()] == ["busy", "cancelled"]
        assert db.delivery().state == "cancelled"


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
    assert db.delivery().state == "calling" and "reason 5" in db.delivery().detail
    clock.advance(30)
    assert out == ["answered"] and db.delivery().attempts == 2


def test_dial_string_formats():
    from ivr.order_caller import national
    assert national("+8613805761234") == "13805761234"
    assert national("+8657687770110") == "057687770110"
