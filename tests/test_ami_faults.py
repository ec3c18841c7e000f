"""Fault tests on the emulator: dropped connection mid-call, Asterisk restarted, a stalled
server, garbage and over-long lines, a wrong secret, an Originate caught by a drop.
The client reconnects, the resync closes calls that ended meanwhile, nothing crashes.

The sockets are real (loopback); every timer (the scenarios, the outage, the keepalive, the
backoff, the action deadlines) runs on one task.Clock the test moves on: nothing waits in real
time."""
import pytest
import pytest_twisted
from twisted.internet import reactor

from gateway import metrics
from gateway.ami import AmiLink, AmiNotConnected, OriginateInterrupted
from gateway.ami.emulator import AmiEmulator, HotlineCall
from gateway.ami.testing import (CollectingSink, database_busy, run_deferred, run_for, run_until,
                                 test_clock)
from gateway.hotline.service import HotlineService
from gateway.hotline.store import get_call
from gateway.hotline.tracker import RESYNC_NOTE
from tests.secrets import WRONG_AMI_SECRET


@pytest.fixture
def clock():
    return test_clock()


@pytest.fixture
def em(clock):
    e = AmiEmulator(reactor, clock=clock, login_fail_delay=0.05)
    e.listen(0, "127.0.0.1")
    yield e
    pytest_twisted.blockon(e.stop())


def make_link(em, **kw):
    args = dict(username="gateway", secret="rig-secret", action_timeout=1, ping_interval=0.3,
                ping_timeout=0.3, backoff_initial=0.05, backoff_max=0.3)
    args.update(kw)
    return AmiLink(reactor, "127.0.0.1", em.port_number, clock=em.clock, **args)


@pytest.fixture
def stack(em, database):
    em.clock.owed.append(database_busy(database))
    sink = CollectingSink()
    link = make_link(em)
    database.add_event_listener(sink.committed)
    svc = HotlineService(reactor, database, link, clock=em.clock)
    svc.startService()
    pytest_twisted.blockon(svc.ready)
    link.startService()
    pytest_twisted.blockon(run_deferred(reactor, em.clock, link.when_ready()))
    yield link, svc, sink, database
    pytest_twisted.blockon(link.stopService())


def until(em, predicate, limit=10.0, what=""):
    return run_until(reactor, em.clock, predicate, limit, what=what)


def drive(em, d, limit=10.0):
    return run_deferred(reactor, em.clock, d, limit)


def seen(svc, call, what):
    """What the tracker has seen of the call (in memory: the clock waits for no database)."""
    lid = call.result.get("linkedid")
    if what == "ended":
        return lid in svc.tracker.finished
    c = svc.tracker.calls.get(lid)
    return c is not None and (what == "arrived" or getattr(c, f"{what}_at") is not None)


def record(database, call):
    return database.run_sync(get_call, call.result["linkedid"])


def kinds(sink, call):
    return [k.split(".")[1] for k, p in sink.events if p["call_id"] == call.result["linkedid"]]


@pytest_twisted.inlineCallbacks
def test_connection_dropped_mid_call_and_the_call_ends_during_the_outage(em, stack):
    link, svc, sink, db = stack
    call = HotlineCall(line="110", outcome="answered", ivr_seconds=0.2, queue_seconds=0.3,
                       talk_seconds=0.5)
    done = em.play(call)
    yield until(em, lambda: seen(svc, call, "answered"))
    back = em.outage(1.0)                # the call hangs up while the link is down
    yield drive(em, done)
    yield drive(em, back)
    yield drive(em, link.when_ready())
    yield until(em, lambda: seen(svc, call, "ended"))
    yield svc.flushed()
    r = record(db, call)
    assert r["outcome"] == "answered" and r["note"] == RESYNC_NOTE
    assert r["hangup_text"] == "ended while the AMI link was down" and r["ended_at"]
    assert link.connections == 2
    assert kinds(sink, call) == ["arrived", "answered", "ended"]


@pytest_twisted.inlineCallbacks
def test_dropped_in_queue_and_abandoned_meanwhile_goes_on_the_callback_list(em, stack):
    link, svc, sink, db = stack
    call = HotlineCall(line="122", outcome="abandoned_queue", ivr=False, queue_seconds=0.5)
    done = em.play(call)
    yield until(em, lambda: seen(svc, call, "queue_joined"))
    back = em.outage(1.0)
    yield drive(em, done)
    yield drive(em, back)
    yield until(em, lambda: seen(svc, call, "ended"))
    yield svc.flushed()
    r = record(db, call)
    # Nobody saw the citizen hang up: closed by the resync, it counts as failed, not abandoned,
    # and the citizen is called back all the same.
    assert r["outcome"] == "failed" and r["callback_state"] == "pending"
    assert kinds(sink, call) == ["arrived", "ended"]


@pytest_twisted.inlineCallbacks
def test_a_call_that_began_during_the_outage_is_opened_by_the_resync(em, stack):
    link, svc, sink, db = stack
    back = em.outage(0.8)
    call = HotlineCall(line="119", outcome="answered", ivr_seconds=0.2, queue_seconds=1.5,
                       talk_seconds=1.0)
    done = em.play(call)
    yield drive(em, back)
    yield drive(em, link.when_ready())
    yield until(em, lambda: seen(svc, call, "arrived"))
    yield drive(em, done)
    yield until(em, lambda: seen(svc, call, "ended"))
    yield svc.flushed()
    r = record(db, call)
    assert r["line"] == "119" and r["outcome"] == "answered" and r["call_taker"] == "PJSIP/1001"
    assert r["hangup_text"] == "Normal Clearing"          # the real hangup, seen live
    assert r["note"].startswith("found live at resync")


@pytest_twisted.inlineCallbacks
def test_asterisk_restarted_mid_call(em, stack):
    link, svc, sink, db = stack
    call = HotlineCall(line="119", outcome="answered", ivr_seconds=0.2, queue_seconds=5)
    em.play(call)
    yield until(em, lambda: seen(svc, call, "queue_joined"))
    yield drive(em, em.restart(delay=0.5, version="11.0.1"))   # no Shutdown event, channels gone
    yield drive(em, link.when_ready())
    yield until(em, lambda: link.banner == "Asterisk Call Manager/11.0.1")
    yield until(em, lambda: seen(svc, call, "ended"))
    yield svc.flushed()
    r = record(db, call)
    assert r["outcome"] == "failed" and r["note"] == RESYNC_NOTE      # cut off by the PBX
    assert r["callback_state"] == "pending"     # someone must call this caller back
    assert em.restarts == 1 and link.connections >= 2


@pytest_twisted.inlineCallbacks
def test_stalled_server_is_dropped_by_the_keepalive_and_the_call_still_ends_right(em, stack):
    link, svc, sink, db = stack
    call = HotlineCall(line="110", outcome="answered", ivr_seconds=0.2, queue_seconds=0.2,
                       talk_seconds=2.5)
    done = em.play(call)
    yield until(em, lambda: seen(svc, call, "answered"))
    em.stall()                          # socket open, nothing answered: half-open
    stalled_at = em.clock.seconds()
    yield until(em, lambda: not link.connected, 3, what="keepalive drops the link")
    # dropped by the keepalive: a Ping every 0.3 s, no Pong within 0.3 s
    assert em.clock.seconds() - stalled_at <= 0.3 + 0.3 + 0.1
    yield drive(em, link.when_ready())  # a fresh session works
    yield drive(em, done)
    yield until(em, lambda: seen(svc, call, "ended"))
    yield svc.flushed()
    r = record(db, call)
    assert r["outcome"] == "answered" and r["hangup_text"] == "Normal Clearing"
    assert r["note"] is None
    assert link.connections == 2


@pytest_twisted.inlineCallbacks
def test_garbage_and_overlong_lines_mid_call(em, stack):
    link, svc, sink, db = stack
    before = metrics.AMI_GARBAGE._value.get()
    call = HotlineCall(line="122", outcome="answered", ivr_seconds=0.3, queue_seconds=0.3,
                       talk_seconds=0.5)
    done = em.play(call)
    yield run_for(reactor, em.clock, 0.1)
    em.send_raw(b"\x00\xff\xfe random line noise\r\n\r\n")
    em.overlong_line(100_000)
    em.send_raw(b"Event: Half\r\nno colon here\r\n" + b"z" * 9000 + b"\r\n\r\n")
    yield drive(em, done)
    yield until(em, lambda: seen(svc, call, "ended"))
    yield svc.flushed()
    assert record(db, call)["outcome"] == "answered"
    assert metrics.AMI_GARBAGE._value.get() - before >= 3
    assert link.connected and link.connections == 1


@pytest_twisted.inlineCallbacks
def test_originate_caught_by_a_drop_fails_clearly_and_is_never_replayed(em, stack):
    link, svc, sink, db = stack
    em.originate_outcome = lambda headers: "noanswer"       # the answer takes seconds
    d = link.originate("PJSIP/13800000000@trunk", context="gateway-out", exten="order",
                       variables={"ORDER_CODE": "0427"}, timeout_ms=5000)
    yield run_for(reactor, em.clock, 0.2)
    em.drop_all()
    with pytest.raises(OriginateInterrupted, match="may or may not have been placed"):
        yield drive(em, d)
    yield drive(em, link.when_ready())
    yield run_for(reactor, em.clock, 0.5)
    assert sum(1 for m in em.actions if m.get("Action") == "Originate") == 1


@pytest_twisted.inlineCallbacks
def test_originate_while_down_fails_at_once(em):
    link = make_link(em)
    with pytest.raises(AmiNotConnected, match="not placed"):
        yield link.originate("PJSIP/1@t", context="gateway-out", exten="order")


@pytest_twisted.inlineCallbacks
def test_wrong_secret_retries_with_growing_backoff_and_never_crashes(em):
    link = make_link(em, secret=WRONG_AMI_SECRET, backoff_initial=0.05, backoff_max=1.0, backoff_factor=2)
    link.startService()
    yield run_for(reactor, em.clock, 2.0)
    logins = sum(1 for m in em.actions if m.get("Action") == "Login")
    assert 2 <= logins <= 7             # 0.05, 0.1, 0.2, 0.4, 0.8 ... not one a second forever
    assert not link.connected and "Authentication failed" in link.last_error
    em.users["gateway"]["secret"] = WRONG_AMI_SECRET       # the secret gets fixed on the Asterisk side
    yield drive(em, link.when_ready())
    assert link.connected
    yield link.stopService()
