"""The emulated PBX against the real gateway parts, over loopback TCP: AmiLink logs in to its
AMI face, the FastAGI server (the real flows) takes its AGI sessions, OrderCaller places order
calls through it, and the hotline service records the citizens' calls it plays.

The sockets are real (loopback); every timer on both sides (the phones' key presses and rings,
the menu timeouts, the retry delays, the PBX scenarios, the AMI deadlines) runs on one
task.Clock that the test moves on: nothing waits in real time."""
import hashlib
import hmac
from datetime import datetime, timezone

import pytest
from twisted.internet.task import Clock
import pytest_twisted
from sqlalchemy import insert, select
from twisted.internet import defer, reactor

from gateway.ami import AmiLink
from gateway.ami.emulator.pbx import EmulatedPbx, PbxService, Phone, PhoneDirectory, dialled_number
from gateway.ami.testing import CollectingSink, database_busy, run_deferred, run_until, test_clock
from gateway.ami.emulator.transcript import Transcript
from gateway.hotline.service import HotlineService
from gateway.hotline.store import get_call
from gateway.hotline.tracker import HotlineTracker
from gateway.storage.schema import deliveries, orders, teams
from ivr.drill import DrillKeypadSink
from ivr.flows.answer_menu import MenuSettings
from ivr.journal import MemoryJournal
from ivr.order_caller import OrderCaller, RetryPolicy
from ivr.refusals import RefusalAudit
from ivr.service import make_fastagi_factory
from ivr.token_gate import CallTokenGate
from ivr.tokens import CallTokens
from tests._paths import ASTERISK

PRESSES_1 = "+447700900001"
PRESSES_0_THEN_2 = "+447700900002"
BUSY = "+447700900003"
MISSING = "+447700900004"
SILENT = "+447700900005"
HANGS_UP = "+447700900006"
NO_ANSWER = "+447700900007"
COMMANDER = "+447700900008"
POLICY = RetryPolicy(attempts=2, delay=0.1, ring_timeout_ms=300)
TOKEN_KEY = b"pbx-test-token-key-0123456789abc"
TOKENS = CallTokens(TOKEN_KEY)       # the order caller mints, the order flow checks: as the gateway


@pytest.fixture
def clock():
    return test_clock()


def bounded(clock, d, seconds=8.0):
    """d's result, the clock driven until it fires (at most ``seconds`` of clock time)."""
    return run_deferred(reactor, clock, d, seconds)


def until(clock, predicate, seconds=5.0, what=""):
    return run_until(reactor, clock, predicate, seconds, what=what)


@pytest.fixture
def gateway_side(clock):
    """The gateway's FastAGI server with the real flows, a drill sink and an in-memory journal."""
    sink = DrillKeypadSink({COMMANDER: ["0427"]})
    journal = MemoryJournal(clock)
    factory = make_fastagi_factory(clock, sink=sink, journal=journal,
                                   settings=MenuSettings(timeout_ms=200), hotline_triage_ms=100,
                                   tokens=CallTokenGate(clock, None, TOKENS, RefusalAudit(clock, None)))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    yield sink, journal, port.getHost().port
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@pytest.fixture
def pbx(gateway_side, clock):
    phones = {PRESSES_1: Phone.presses("1", after=0.1),
              PRESSES_0_THEN_2: Phone.presses("0", "2", after=0.05),
              BUSY: Phone.busy(ring=0.05), MISSING: Phone.missing(), SILENT: Phone.silent(ring=0.05),
              HANGS_UP: Phone.hangs_up(after=0.05), NO_ANSWER: Phone.unanswered()}
    p = EmulatedPbx(reactor, agi_host="127.0.0.1", agi_port=gateway_side[2], phones=phones,
                    default=Phone.missing(), agi_idle_timeout=5, clock=clock)
    p.listen(0, "127.0.0.1")
    yield p
    pytest_twisted.blockon(p.stop())


@pytest.fixture
def link(pbx, clock):
    lk = AmiLink(reactor, "127.0.0.1", pbx.port_number, username="gateway", secret="rig-secret",
                 action_timeout=2, backoff_initial=0.05, backoff_max=0.3, originate_grace=3,
                 clock=clock)
    lk.startService()
    pytest_twisted.blockon(bounded(clock, lk.when_ready(), 5))
    yield lk
    pytest_twisted.blockon(lk.stopService())


def _seed(conn):
    now = datetime.now(timezone.utc)
    conn.execute(insert(teams).values(id=3, code="PUB-03", name="城关镇", kind="public", created_at=now))
    conn.execute(insert(orders).values(id=1, code="0427", incident_ref="INC-1", kind="rescue", text="t",
                                       rule="same_township", voice=True, state="open", created_at=now))


@pytest.fixture
def caller(link, database, clock):
    clock.owed.append(database_busy(database))
    pytest_twisted.blockon(database.run(_seed))
    return OrderCaller(clock, link, database, policy=POLICY, tokens=TOKENS)


def call_order(caller, phone):
    return bounded(caller.reactor, caller.call_order("0427", phone, order_id=1, team_id=3))


def delivery(database):
    return database.run_sync(lambda conn: conn.execute(select(deliveries)).one()._asdict())


# --- order calls --------------------------------------------------------------------------------
@pytest_twisted.inlineCallbacks
def test_a_phone_that_presses_1_is_recorded_with_the_order_and_phone(caller, gateway_side, pbx,
                                                                      link, database, clock):
    sink, journal, _ = gateway_side
    events = []
    link.add_event_listener(events.append)
    outcome = yield call_order(caller, PRESSES_1)
    assert outcome == "answered"
    yield until(clock, lambda: sink.answers, 5, what="the keypad answer")
    (answer,) = sink.answers
    assert (answer.digit, answer.order_code, answer.caller) == ("1", "0427", PRESSES_1)
    (call,) = pbx.order_calls()
    assert answer.call_id == call.uniqueid and call.uniqueid.startswith("yihu-order-0427-")
    assert call.number == "07700900001" and call.script == "order?order=0427"
    yield bounded(clock, call.ended)
    assert call.agi_status == "HANGUP" and call.agi.channel.hung_up_by == "gateway"
    assert call.heard[:2] == ["yihu/order-intro", "digits:0427"] and "yihu/status-received" in call.heard
    # The Originate's token reached the channel as Asterisk sets Variable: headers, and it is the
    # HMAC the documentation states (computed here, not by the code under test).
    variables = call.agi.variables
    expires, nonce, mac = variables["YIHU_TOKEN"].split(".")
    signed = f"yihu-call-v1|{variables['YIHU_DELIVERY']}|{PRESSES_1}|{expires}|{nonce}".encode()
    assert mac == hmac.new(TOKEN_KEY, signed, hashlib.sha256).hexdigest()
    assert variables["YIHU_PHONE"] == PRESSES_1 and "GET VARIABLE YIHU_TOKEN" in call.agi.commands
    # The AMI stream, as recorded (order-call-press1): the dial, the answer, the AGI, our
    # OriginateResponse, and the hang-up only after the FastAGI session is over.
    yield until(clock, lambda: any(m.name == "Hangup" and m["Uniqueid"] == call.uniqueid
                                        for m in events), 5, what="the Hangup event")
    mine = [m for m in events if m.get("Uniqueid") == call.uniqueid
            or m.get("DestUniqueid") == call.uniqueid]
    names = [m.name for m in mine]
    assert names[:2] == ["Newchannel", "DialBegin"]
    i = names.index("DialEnd")
    assert mine[i]["DialStatus"] == "ANSWER"
    agi = next(k for k, m in enumerate(mine) if m.name == "Newexten" and m["Application"] == "AGI")
    assert mine[agi]["AppData"].endswith("/order?order=0427")
    assert names.index("OriginateResponse") == agi + 1 and names[-1] == "Hangup"
    resp = mine[agi + 1]
    assert (resp["Response"], resp["Reason"]) == ("Success", "4")
    d = delivery(database)
    assert d["state"] == "answered" and d["attempts"] == 1


@pytest_twisted.inlineCallbacks
def test_an_asterisk_without_our_prompts_still_takes_the_answer(caller, gateway_side, pbx, clock):
    """The prompts were never installed on this PBX: every STREAM FILE / GET DATA of ours is
    answered `result=-1` (no HANGUP), and the commander's key is still read and recorded."""
    from ivr.emulator.sounds import SoundLibrary
    sink, journal, _ = gateway_side
    pbx.sounds = SoundLibrary.bare()
    outcome = yield call_order(caller, PRESSES_1)
    assert outcome == "answered"
    yield until(clock, lambda: sink.answers, 5, what="the keypad answer")
    assert [(a.digit, a.order_code) for a in sink.answers] == [("1", "0427")]
    (call,) = pbx.order_calls()
    yield bounded(clock, call.ended)
    ch = call.agi.channel
    assert "yihu/order-intro" in ch.unplayable and "yihu/order-menu" in ch.unplayable
    assert "WAIT FOR DIGIT 200" in call.agi.commands          # the menu key, read all the same
    assert "HANGUP" not in call.agi.replies[:call.agi.replies.index("200 result=-1") + 1]
    assert ch.hung_up_by == "gateway" and journal.no_answers == []


@pytest_twisted.inlineCallbacks
def test_zero_repeats_the_order_then_two_is_arrived(caller, gateway_side, pbx, clock):
    sink, journal, _ = gateway_side
    outcome = yield call_order(caller, PRESSES_0_THEN_2)
    assert outcome == "answered"
    yield until(clock, lambda: sink.answers, 5, what="the keypad answer")
    assert [a.digit for a in sink.answers] == ["2"]
    assert [e.digits for e in journal.entries] == ["0", "2"]
    (call,) = pbx.order_calls()
    yield bounded(clock, call.ended)
    assert call.heard.count("yihu/order-intro") == 2          # 0 read the order again


@pytest_twisted.inlineCallbacks
def test_a_busy_phone_is_busy_after_every_attempt(caller, gateway_side, pbx, link, database):
    sink, journal, _ = gateway_side
    responses = []
    link.add_event_listener(lambda m: m.name == "OriginateResponse" and responses.append(m))
    outcome = yield call_order(caller, BUSY)
    assert outcome == "busy"
    calls = pbx.order_calls()
    assert len(calls) == POLICY.attempts and all(c.script is None for c in calls)
    assert [(r["Response"], r["Reason"]) for r in responses] == [("Failure", "5")] * POLICY.attempts
    assert sink.answers == [] and journal.entries == []
    d = delivery(database)
    assert d["state"] == "busy" and d["attempts"] == POLICY.attempts


@pytest_twisted.inlineCallbacks
def test_a_number_that_does_not_exist_cannot_be_called(caller, gateway_side, pbx, link, database, clock):
    sink, journal, _ = gateway_side
    responses = []
    link.add_event_listener(lambda m: m.name == "OriginateResponse" and responses.append(m))
    outcome = yield call_order(caller, MISSING)
    assert outcome == "failed"
    assert [(r["Response"], r["Reason"], r["Uniqueid"]) for r in responses] == \
        [("Failure", "0", "<unknown>")] * POLICY.attempts
    assert sink.answers == [] and delivery(database)["state"] == "failed"
    # Unknown numbers follow the directory's default (here: no such number).
    outcome = yield bounded(clock, caller.call_order("0427", "+447700900999", order_id=1, team_id=3))
    assert outcome == "failed"


@pytest_twisted.inlineCallbacks
def test_a_silent_phone_answers_but_no_answer_is_recorded(caller, gateway_side, pbx, clock):
    sink, journal, _ = gateway_side
    outcome = yield call_order(caller, SILENT)
    assert outcome == "answered"            # the phone was picked up ...
    (call,) = pbx.order_calls()
    yield bounded(clock, call.ended)
    assert sink.answers == []               # ... but nothing was keyed
    (na,) = journal.no_answers
    assert (na.order_code, na.caller, na.call_id) == ("0427", SILENT, call.uniqueid)


@pytest_twisted.inlineCallbacks
def test_a_phone_that_hangs_up_during_the_prompt(caller, gateway_side, pbx, clock):
    sink, journal, _ = gateway_side
    outcome = yield call_order(caller, HANGS_UP)
    assert outcome == "answered"
    (call,) = pbx.order_calls()
    yield bounded(clock, call.ended)
    assert call.agi.channel.hung_up_by == "caller" and call.agi_status == "HANGUP"
    assert sink.answers == [] and [e.note for e in journal.no_answers] == \
        ["no answer: hung up before keying an answer"]


@pytest_twisted.inlineCallbacks
def test_a_phone_nobody_picks_up_rings_until_the_timeout(caller, gateway_side, pbx, link, clock):
    responses = []
    link.add_event_listener(lambda m: m.name == "OriginateResponse" and responses.append(m))
    start = clock.seconds()
    outcome = yield call_order(caller, NO_ANSWER)
    assert outcome == "no_answer"
    assert [r["Reason"] for r in responses] == ["3"] * POLICY.attempts
    # each attempt rang for the Originate's Timeout (0.3 s), with the retry delay between
    elapsed = clock.seconds() - start
    want = POLICY.attempts * POLICY.ring_timeout_ms / 1000 + (POLICY.attempts - 1) * POLICY.delay
    assert want <= elapsed < want + 0.5


@pytest_twisted.inlineCallbacks
def test_calls_at_the_same_time_each_go_their_own_way(caller, gateway_side, pbx, clock):
    sink, journal, _ = gateway_side
    outcomes = yield defer.gatherResults([call_order(caller, p) for p in
                                          (PRESSES_1, SILENT, BUSY, PRESSES_0_THEN_2)])
    assert outcomes == ["answered", "answered", "busy", "answered"]
    yield bounded(clock, defer.gatherResults([c.ended for c in pbx.order_calls()]))
    assert sorted((a.caller, a.digit) for a in sink.answers) == [(PRESSES_1, "1"),
                                                                 (PRESSES_0_THEN_2, "2")]
    assert [na.caller for na in journal.no_answers] == [SILENT]


# --- the feedback line ----------------------------------------------------------------------------
@pytest_twisted.inlineCallbacks
def test_a_commander_calls_the_feedback_line(pbx, gateway_side, link, clock):
    sink, journal, _ = gateway_side
    call = pbx.feedback_call(COMMANDER, ["3"])
    yield bounded(clock, call.ended)
    assert call.script == "feedback" and call.agi_status in ("SUCCESS", "HANGUP")
    (answer,) = sink.answers
    assert (answer.caller, answer.order_code, answer.digit) == (COMMANDER, "0427", "3")


# --- the phone directory -----------------------------------------------------------------------------
def test_the_directory_matches_e164_and_national_forms(tmp_path):
    f = tmp_path / "phones.yaml"
    f.write_text('default: {action: busy}\nphones:\n  "+447700900001": {moves: "0,2", after: 1}\n'
                 '  "+8613805761234": {action: nosuch}\n')
    d = PhoneDirectory.load(f)
    assert d.lookup(dialled_number("PJSIP/07700900001@trunk")) == Phone("answer", 0.2, ("0", "2"), 1.0)
    assert d.lookup("13805761234").action == "nosuch" and d.lookup("8613805761234").action == "nosuch"
    assert d.lookup("999").action == "busy"
    with pytest.raises(ValueError):
        Phone.from_dict({"action": "explode"})


# --- hotline calls ------------------------------------------------------------------------------------
@pytest.fixture
def hotline(pbx, database, clock):
    clock.owed.append(database_busy(database))
    sink = CollectingSink()
    lk = AmiLink(reactor, "127.0.0.1", pbx.port_number, username="gateway", secret="rig-secret",
                 action_timeout=2, backoff_initial=0.05, backoff_max=0.3, clock=clock)
    database.add_event_listener(sink.committed)
    svc = HotlineService(reactor, database, lk, clock=clock)
    svc.startService()
    pytest_twisted.blockon(bounded(clock, svc.ready))
    lk.startService()
    pytest_twisted.blockon(bounded(clock, lk.when_ready(), 5))
    yield svc, sink
    pytest_twisted.blockon(lk.stopService())


def recorded(name):
    """The record the real tracker makes of a recorded Asterisk 22 hotline call."""
    ended = []
    tracker = HotlineTracker(lambda c, k: "ended" in k and ended.append(c.copy()), clock=Clock().seconds)
    for m in Transcript.load(ASTERISK / f"{name}.ami.jsonl").events():
        tracker.handle(m)
    (call,) = ended
    return call


def same_story(row: dict, rec) -> None:
    """The PBX's call was recorded as the real Asterisk's was: same outcome, same stages."""
    assert row["outcome"] == rec.outcome
    for stage in ("ivr_at", "queue_joined_at", "answered_at"):
        assert (row[stage] is None) == (getattr(rec, stage) is None), stage
    assert row["hangup_cause"] == rec.hangup_cause


def kinds(sink, call):
    return [k.split(".")[1] for k, p in sink.events if p["call_id"] == call.info.get("linkedid")]


def tracked_end(svc, call):
    """The tracker closed the call (in memory: the clock does not wait for the database)."""
    return call.info.get("linkedid") in svc.tracker.finished


@pytest_twisted.inlineCallbacks
def test_a_119_caller_who_hangs_up_in_the_ivr_is_abandoned_ivr(pbx, hotline, gateway_side, database, clock):
    svc, sink = hotline
    call = pbx.hotline_call("119", "13905769876", outcome="abandoned_ivr", speed=4, scripted=True)
    yield bounded(clock, call.ended)
    assert call.script == "hotline?line=119" and call.agi.channel.hung_up_by == "caller"
    assert call.agi_status == "HANGUP"
    yield until(clock, lambda: tracked_end(svc, call), 5, what="the call ended")
    yield bounded(clock, svc.flushed())
    r = database.run_sync(get_call, call.info["linkedid"])
    assert (r["line"], r["caller"], r["outcome"]) == ("119", "13905769876", "abandoned_ivr")
    assert r["ivr_at"] is not None and r["queue_joined_at"] is None and r["answered_at"] is None
    same_story(r, recorded("hotline-abandoned"))
    assert kinds(sink, call) == ["arrived", "abandoned", "ended"]


@pytest_twisted.inlineCallbacks
def test_a_119_caller_who_presses_2_and_is_answered(pbx, hotline, gateway_side, database, clock):
    svc, sink = hotline
    _, journal, _ = gateway_side
    call = pbx.hotline_call("119", "13905769876", outcome="answered", moves=["2"], scripted=True,
                            queue_seconds=0.4, talk_seconds=0.4, speed=4)
    yield bounded(clock, call.ended)
    assert call.agi_status == "SUCCESS" and call.agi.variables.get("TRIAGE") == "2"
    yield until(clock, lambda: tracked_end(svc, call), 5, what="the call ended")
    yield bounded(clock, svc.flushed())
    r = database.run_sync(get_call, call.info["linkedid"])
    assert (r["line"], r["outcome"], r["call_taker"]) == ("119", "answered", "PJSIP/1001")
    assert r["ivr_at"] <= r["queue_joined_at"] <= r["answered_at"] <= r["ended_at"]
    same_story(r, recorded("hotline-answered"))
    assert kinds(sink, call) == ["arrived", "answered", "ended"]
    assert [(e.digits, e.script) for e in journal.entries] == [("2", "hotline")]


@pytest_twisted.inlineCallbacks
def test_a_122_caller_who_gives_up_in_the_queue(pbx, hotline, database, clock):
    svc, sink = hotline
    call = pbx.hotline_call("122", "13905760000", outcome="abandoned_queue", queue_seconds=0.4,
                            speed=4)
    yield bounded(clock, call.ended)
    yield until(clock, lambda: tracked_end(svc, call), 5, what="the call ended")
    yield bounded(clock, svc.flushed())
    r = database.run_sync(get_call, call.info["linkedid"])
    assert (r["line"], r["outcome"]) == ("122", "abandoned_queue")
    rec = recorded("hotline-queue-abandon")
    assert r["outcome"] == rec.outcome and r["queue_joined_at"] is not None


@pytest_twisted.inlineCallbacks
def test_the_gateway_unreachable_the_citizen_still_reaches_the_queue(clock):
    # A PBX whose FastAGI target is a closed port: AGISTATUS=FAILURE, and the dialplan goes on
    # to the call-takers' queue (an emergency call never depends on the gateway).
    from twisted.internet.protocol import Factory
    p = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
    dead = p.getHost().port
    yield p.stopListening()
    pbx = EmulatedPbx(reactor, agi_port=dead, clock=clock)
    pbx.listen(0)
    events = []
    lk = AmiLink(reactor, "127.0.0.1", pbx.port_number, username="gateway", secret="rig-secret",
                 backoff_initial=0.05, clock=clock)
    lk.add_event_listener(events.append)
    lk.startService()
    try:
        yield bounded(clock, lk.when_ready(), 5)
        call = pbx.hotline_call("110", outcome="answered", queue_seconds=0.1, talk_seconds=0.1, scripted=True,
                                speed=4)
        yield bounded(clock, call.ended)
        assert call.agi_status == "FAILURE" and call.agi is None
        yield until(clock, lambda: any(m.name == "Hangup" for m in events), 5, what="Hangup")
        statuses = [m["Value"] for m in events if m.name == "VarSet" and m["Variable"] == "AGISTATUS"]
        assert statuses == ["FAILURE"]
        assert "AgentConnect" in [m.name for m in events]
    finally:
        yield lk.stopService()
        yield pbx.stop()


@pytest_twisted.inlineCallbacks
def test_stopping_the_pbx_mid_call_drops_the_fastagi_session(gateway_side, clock):
    sink, journal, agi_port = gateway_side
    pbx = EmulatedPbx(reactor, agi_port=agi_port, default=Phone.presses("1", after=30), clock=clock)
    svc = PbxService(pbx, 0)
    svc.startService()
    lk = AmiLink(reactor, "127.0.0.1", pbx.port_number, username="gateway", secret="rig-secret",
                 backoff_initial=0.05, clock=clock)
    lk.startService()
    try:
        yield bounded(clock, lk.when_ready(), 5)
        phone_ = "+447700900042"
        variables = {"ORDER_CODE": "0427", "YIHU_PHONE": phone_, "YIHU_DELIVERY": "1",
                     **TOKENS.variables("1", phone_, clock.seconds(), 30)}
        r = yield bounded(clock, lk.originate("PJSIP/07700900042@trunk", context="gateway-out",
                                              exten="order", variables=variables))
        assert (r.success, r.reason) == (True, 4)
        (call,) = pbx.order_calls()
        yield until(clock, lambda: call.agi is None and any(
            "GET DATA" in c for p in pbx._agi_sessions for c in p.record.commands), 5,
            what="the FastAGI session at the menu")
        yield bounded(clock, svc.stopService())        # the phone is still "thinking" about its key
        yield until(clock, lambda: call.agi is not None, 5, what="the session closed")
        assert not pbx._agi_sessions and sink.answers == []
    finally:
        yield lk.stopService()
        if svc.running:
            yield svc.stopService()
