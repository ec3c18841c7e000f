"""The AMI emulator is faithful to the recorded Asterisk 22 sessions.

Over real loopback sockets; the emulator's time (scenario pace, the login refusal delay, the
restart) is a task.Clock the test moves on, so nothing waits in real time."""
import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from gateway.ami.emulator import AmiEmulator, HotlineCall, OrderCall, Transcript
from gateway.ami.emulator.model import EVENT_CLASS
from gateway.ami.parser import AmiParser
from gateway.ami.protocol import AmiClientProtocol
from gateway.ami.testing import run_deferred, run_for, run_until, test_clock
from tests._paths import ASTERISK, asterisk

RIG_QUEUES = {"nobody": ["Local/2001@calltaker-noanswer/n"],
              "calltakers": ["Local/1001@calltaker/n"]}


def load(name):
    return Transcript.load(asterisk(f"{name}.ami.jsonl"))


@pytest.fixture
def em():
    e = AmiEmulator(reactor, queues=RIG_QUEUES, clock=test_clock())
    e.listen(0, "127.0.0.1")
    yield e
    pytest_twisted.blockon(e.stop())


class Raw(protocol.Protocol):
    """A bare client that records what the server sends, byte for byte."""

    def __init__(self, clock):
        self.clock = clock
        self.data = b""
        self.closed = defer.Deferred()
        self.closed_at = None

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.closed_at = self.clock.seconds()
        self.closed.callback(None)

    def messages(self):
        return list(AmiParser().feed(self.data))


def connect_raw(em):
    return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", em.port_number), Raw(em.clock))


def connect_client(em, events=None):
    return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", em.port_number),
                           AmiClientProtocol(em.clock, on_event=events.append if events is not None
                                             else None))


def advance(em, seconds):
    return run_for(reactor, em.clock, seconds)


def drive(em, d, limit=30.0):
    return run_deferred(reactor, em.clock, d, limit)


VARYING = {"Timestamp", "Uptime", "LastReload", "Output", "LoginTime", "LastCall", "CallsTaken",
           "Completed", "Abandoned", "TalkTime", "ServicelevelPerf", "ServicelevelPerf2"}


def same_shape(got, want):
    assert got.keys() == want.keys(), (got, want)
    for k, v in want:
        if k not in VARYING:
            assert got[k] == v, (k, got[k], v)


@pytest_twisted.inlineCallbacks
def test_basics_session_answers_like_asterisk(em):
    tr = load("basics")
    raw = yield connect_raw(em)
    want = tr.server
    # Replay the recorded client's bytes action by action, with its own ActionIDs.
    for _t, action in tr.client:
        raw.transport.write(action.to_bytes())
        yield advance(em, 0.05)
    yield run_until(reactor, em.clock, lambda: raw.closed.called, 3, what="Logoff closes the socket")
    got = raw.messages()
    assert raw.data.startswith(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n")
    assert [m.kind for m in got] == [m.kind for _t, m in want]
    for g, (_t, w) in zip(got, want):
        same_shape(g, w)


@pytest_twisted.inlineCallbacks
def test_md5_challenge_then_wrong_secret_is_refused_after_a_second_and_closed(em):
    tr = load("login-md5-and-fail")
    raw = yield connect_raw(em)
    (_t, challenge), (_t2, login) = tr.client
    raw.transport.write(challenge.to_bytes())
    yield advance(em, 0.1)
    raw.transport.write(login.to_bytes())
    sent_at = em.clock.seconds()
    yield drive(em, raw.closed)
    banner, ch, err = raw.messages()
    assert banner["Banner"] == "Asterisk Call Manager/11.0.0"
    assert ch.keys() == ["Response", "ActionID", "Challenge"] and ch["Challenge"].isdigit()
    same_shape(err, tr.responses()["login-bad"])
    assert 0.9 <= raw.closed_at - sent_at < 1.2          # Asterisk makes a bad login wait 1 s


@pytest_twisted.inlineCallbacks
def test_md5_login_succeeds_with_the_right_key(em):
    c = yield connect_client(em)
    yield c.banner
    r = yield c.login("gateway", "rig-secret", auth="md5")
    assert r.response["Message"] == "Authentication accepted"
    c.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_actions_before_login_are_refused(em):
    c = yield connect_client(em)
    yield c.banner
    with pytest.raises(Exception, match="Permission denied"):
        yield c.send_action("CoreShowChannels")
    c.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_event_mask_at_login_filters_classes(em):
    tr = load("login-eventmask")
    recorded = {m.name for m in tr.events()}
    masked, full = [], []
    c1 = yield connect_client(em, masked)
    c2 = yield connect_client(em, full)
    yield c1.banner
    yield c2.banner
    yield c1.login("gateway", "rig-secret", auth="plain", events="call,dtmf,agent,user")
    yield c2.login("gateway", "rig-secret", auth="plain")
    yield drive(em, em.play(HotlineCall(line="110", outcome="answered", speed=50)))
    yield advance(em, 0.1)
    got = {m.name for m in masked}
    assert "FullyBooted" in {m.name for m in full} and "FullyBooted" not in got
    assert "Newexten" in {m.name for m in full}
    assert not {n for n in got if EVENT_CLASS.get(n) not in ("call", "dtmf", "agent", "user")}
    assert not {"Newexten", "VarSet"} & got and not {"Newexten", "VarSet"} & recorded
    c1.transport.loseConnection()
    c2.transport.loseConnection()


def recorded_shapes():
    shapes = {}
    for p in ASTERISK.glob("*.ami.jsonl"):
        for m in Transcript.load(p).events():
            shapes.setdefault(m.name, set()).add(tuple(shape_keys(m)))
    return shapes


def shape_keys(m):
    # ChanVariable(<channel name>) differs per channel; the number of ChanVariables per
    # manager.conf.  Everything else must match exactly, in order.
    return [k.split("(")[0] for k in m.keys()]


@pytest_twisted.inlineCallbacks
def test_every_scripted_event_has_a_recorded_shape(em):
    events = []
    c = yield connect_client(em, events)
    yield c.banner
    yield c.login("gateway", "rig-secret", auth="plain")
    plays = [HotlineCall(line=line, outcome=o, speed=100, hangup_by=h)
             for line, o, h in (("110", "answered", "caller"), ("119", "abandoned_ivr", "caller"),
                                ("122", "abandoned_queue", "caller"), ("110", "answered", "agent"),
                                ("119", "failed", "caller"))]
    for oc in ("answered", "busy", "nosuch", "noanswer", "congestion"):
        plays.append(OrderCall({"Channel": f"PJSIP/{oc}@trunk", "Context": "gateway-out",
                                "Exten": "order", "Timeout": "100",
                                "Variable": ["ORDER_CODE=0427"]}, "x-1", outcome=oc, speed=100))
    yield drive(em, defer.gatherResults([em.play(p) for p in plays]))
    yield advance(em, 0.1)
    shapes = recorded_shapes()
    checked = set()
    for m in events:
        if m.name not in shapes:
            assert m.name in ("AgentRingNoAnswer", "FullyBooted"), m.name
            continue
        assert tuple(shape_keys(m)) in shapes[m.name], (m.name, shape_keys(m))
        checked.add(m.name)
    assert {"Newchannel", "Newexten", "VarSet", "Newstate", "QueueCallerJoin", "AgentCalled",
            "DialBegin", "DialEnd", "AgentConnect", "BridgeEnter", "Hangup",
            "QueueCallerAbandon", "OriginateResponse", "AgentComplete"} <= checked
    c.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_core_show_channels_shows_what_is_live(em):
    c = yield connect_client(em)
    yield c.banner
    yield c.login("gateway", "rig-secret", auth="plain")
    call = HotlineCall(line="119", outcome="answered", ivr_seconds=0.3, queue_seconds=0.3,
                       talk_seconds=0.6)
    done = em.play(call)
    yield advance(em, 1.3)              # in the bridge with the call-taker
    r = yield drive(em, c.send_action("CoreShowChannels"))
    assert r.response["Message"] == "Channels will follow"
    assert r.complete["ListItems"] == str(len(r.events)) == "2"
    mine = next(e for e in r.events if e["Uniqueid"] == call.result["uniqueid"])
    assert mine["Application"] == "Queue" and mine["BridgeId"]
    assert "HOTLINE=119" in mine.getall("ChanVariable")
    assert mine["Duration"] == "00:00:01"
    yield drive(em, done)
    r = yield drive(em, c.send_action("CoreShowChannels"))
    assert r.events == [] and r.complete["ListItems"] == "0"
    c.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_queue_status_lists_callers_waiting(em):
    c = yield connect_client(em)
    yield c.banner
    yield c.login("gateway", "rig-secret", auth="plain")
    call = HotlineCall(line="122", outcome="abandoned_queue", ivr=False, queue_seconds=1.0)
    done = em.play(call)
    yield advance(em, 0.3)
    r = yield drive(em, c.send_action("QueueStatus"))
    entries = [e for e in r.events if e.name == "QueueEntry"]
    assert [e["Uniqueid"] for e in entries] == [call.result["uniqueid"]]
    assert r.complete.name == "QueueStatusComplete"
    assert r.complete["ListItems"] == str(len(r.events))
    yield drive(em, done)
    c.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_originate_response_goes_to_every_session_with_the_originators_action_id(em):
    ev1, ev2 = [], []
    c1 = yield connect_client(em, ev1)
    c2 = yield connect_client(em, ev2)
    for c in (c1, c2):
        yield c.banner
        yield c.login("gateway", "rig-secret", auth="plain")
    r = yield c1.send_action("Originate", [("Channel", "PJSIP/13800000000@trunk"),
                                           ("Context", "gateway-out"), ("Exten", "order"),
                                           ("Priority", "1"), ("Async", "true")],
                             action_id="gw-A-77")
    assert r.response["Message"] == "Originate successfully queued"
    yield run_until(reactor, em.clock, lambda: any(m.name == "OriginateResponse" for m in ev2), 3)
    for events in (ev1, ev2):
        (o,) = [m for m in events if m.name == "OriginateResponse"]
        assert o["ActionID"] == "gw-A-77" and o["Reason"] == "4" and o["Response"] == "Success"
    for c in (c1, c2):
        c.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_core_restart_closes_every_session_without_a_word_and_comes_back(em):
    c = yield connect_client(em)
    yield c.banner
    yield c.login("gateway", "rig-secret", auth="plain")
    lost = defer.Deferred()
    c.on_connection_lost = lambda p, reason: lost.callback(None)
    d = c.send_action("Command", {"Command": "core restart now"})
    d.addErrback(lambda f: f)           # fails with AmiConnectionLost: no reply ever comes
    yield drive(em, lost)
    restarted_at = em.clock.seconds()
    assert em.port is None                       # nothing listens while Asterisk restarts
    yield run_until(reactor, em.clock, lambda: em.port is not None, 5, what="Asterisk back")
    assert 0 < em.clock.seconds() - restarted_at <= 1.1
    raw = yield connect_raw(em)
    yield run_until(reactor, em.clock, lambda: raw.data, 1, what="the new banner")
    assert raw.data == b"Asterisk Call Manager/11.0.0\r\n"
    raw.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_transcript_replay_sends_the_recorded_events(em):
    tr = load("hotline-abandoned")
    events = []
    c = yield connect_client(em, events)
    yield c.banner
    yield c.login("gateway", "rig-secret", auth="plain")
    yield drive(em, em.play(tr.unsolicited(speed=20)))
    yield advance(em, 0.1)
    want = [m for m in tr.events() if m.name != "FullyBooted"]
    got = [m for m in events if m.name != "FullyBooted"]
    assert got == want
    c.transport.loseConnection()
