"""Replaying each recorded Asterisk 22 session through the real client over TCP (the emulator
plays the server side) gives the right call records and the right Originate outcomes.
Real loopback sockets; the emulator's pace and every timer run on a task.Clock."""
import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import reactor
from zope.interface.verify import verifyObject

from gateway.ami import AmiLink
from gateway.ami.emulator import AmiEmulator, Transcript
from gateway.ami.testing import (CollectingSink, database_busy, run_deferred, run_for, run_until,
                                 test_clock)
from gateway.hotline.service import HotlineService
from gateway.interfaces import IOriginator
from gateway.storage.schema import hotline_calls
from tests._paths import asterisk


def load(name):
    return Transcript.load(asterisk(f"{name}.ami.jsonl"))


def rows(database):
    return database.run_sync(lambda c: [dict(r._mapping) for r in
                                        c.execute(select(hotline_calls).order_by(hotline_calls.c.id))])


@pytest.fixture
def stack(database):
    em = AmiEmulator(reactor, clock=test_clock())
    em.clock.owed.append(database_busy(database))
    em.listen(0, "127.0.0.1")

    def committed(kind, payload):
        # Durable before told: the record is in the database when the event goes out.
        found = [r for r in rows(database) if r["call_id"] == payload["call_id"]]
        assert found, f"{kind} published before the record was committed"
        if kind in ("hotline.ended", "hotline.abandoned"):
            assert found[0]["outcome"] == payload["outcome"]
    sink = CollectingSink(check=committed)
    link = AmiLink(reactor, "127.0.0.1", em.port_number, username="gateway", secret="rig-secret",
                   action_timeout=2, ping_interval=1, ping_timeout=1, backoff_initial=0.05,
                   backoff_max=0.3, clock=em.clock)
    database.add_event_listener(sink.committed)
    svc = HotlineService(reactor, database, link, clock=em.clock)
    svc.startService()
    pytest_twisted.blockon(svc.ready)
    link.startService()
    pytest_twisted.blockon(run_deferred(reactor, em.clock, link.when_ready()))
    yield em, link, svc, sink
    pytest_twisted.blockon(link.stopService())
    pytest_twisted.blockon(em.stop())


EXPECTED = {
    "hotline-answered": dict(line="110", caller="13805761234", outcome="answered",
                             call_taker="Local/1001@calltaker/n", queue="calltakers", ivr=True,
                             callback_state=None, events=["arrived", "answered", "ended"]),
    "hotline-abandoned": dict(line="119", caller="13905769876", outcome="abandoned_ivr",
                              call_taker=None, queue=None, ivr=True, callback_state="pending",
                              events=["arrived", "abandoned", "ended"]),
    "hotline-queue-abandon": dict(line="122", caller="15857601111", outcome="abandoned_queue",
                                  call_taker=None, queue="nobody", ivr=False,
                                  callback_state="pending", events=["arrived", "abandoned", "ended"]),
    "login-eventmask": dict(line="110", caller="13805761234", outcome="answered",
                            call_taker="Local/1001@calltaker/n", queue="calltakers", ivr=False,
                            callback_state=None, events=["arrived", "answered", "ended"]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest_twisted.inlineCallbacks
def test_hotline_recording_gives_the_right_record(stack, database, name):
    em, link, svc, sink = stack
    tr = load(name)
    yield run_deferred(reactor, em.clock, em.play(tr.unsolicited(speed=4)))
    yield run_until(reactor, em.clock, lambda: svc.tracker.finished, 5, what="the call ended")
    yield svc.flushed()
    want = EXPECTED[name]
    (r,) = rows(database)
    assert r["line"] == want["line"] and r["caller"] == want["caller"]
    assert r["outcome"] == want["outcome"]
    assert r["call_taker"] == want["call_taker"] and r["queue"] == want["queue"]
    assert (r["ivr_at"] is not None) == want["ivr"]
    assert r["callback_state"] == want["callback_state"]
    assert r["hangup_cause"] == 16 and r["hangup_text"] == "Normal Clearing"
    assert r["arrived_at"] <= r["ended_at"]
    if r["outcome"] == "answered":
        assert r["arrived_at"] <= r["queue_joined_at"] <= r["answered_at"] <= r["ended_at"]
        assert r["hold_seconds"] is not None and r["hold_seconds"] < 1
    assert r["call_id"] == tr.events()[1]["Linkedid"] or r["call_id"].startswith("1796")
    assert [k.split(".")[1] for k, _ in sink.events] == want["events"]
    assert sink.errors == []
    assert link.connections == 1


@pytest.mark.parametrize("name", ["order-call-press1", "order-call-busy", "order-call-nosuch",
                                  "order-call-silent", "order-call-prompts",
                                  "order-call-getdata", "basics"])
@pytest_twisted.inlineCallbacks
def test_order_call_recordings_make_no_hotline_record(stack, database, name):
    em, link, svc, sink = stack
    yield run_deferred(reactor, em.clock, em.play(load(name).unsolicited(speed=20)))
    yield run_for(reactor, em.clock, 0.1)
    yield svc.flushed()
    assert rows(database) == [] and sink.events == []
    assert link.connected and link.connections == 1     # foreign OriginateResponses ignored


@pytest.mark.parametrize("name,segment,success,reason", [
    ("order-call-press1", 0, True, 4),
    ("order-call-silent", 0, True, 4),
    ("order-call-busy", 0, False, 5),
    ("order-call-nosuch", 0, False, 0),
])
@pytest_twisted.inlineCallbacks
def test_recorded_originate_outcomes_through_the_real_client(stack, name, segment, success, reason):
    em, link, svc, sink = stack
    assert verifyObject(IOriginator, link)
    seg = load(name).originate_segments()[segment]
    em.expect_originate(seg)
    a = seg.action
    variables = dict(v.split("=", 1) for v in a.getall("Variable"))
    result = yield run_deferred(reactor, em.clock, link.originate(
        a["Channel"], context=a["Context"], exten=a["Exten"], priority=int(a.get("Priority", 1)),
        variables=variables or None, caller_id=a.get("CallerID"),
        timeout_ms=int(a.get("Timeout", 30000))))
    assert result.success is success and result.reason == reason
    assert result.action_id.startswith("yihu-")
    if success:
        assert result.uniqueid and result.channel.startswith(a["Channel"].split("@")[0])
    else:
        assert result.uniqueid is None and result.channel == a["Channel"]
    sent = [m for m in em.actions if m.get("Action") == "Originate"]
    assert sent[-1]["Async"] == "true" and sent[-1]["ActionID"] == result.action_id
