"""The AMI client protocol on a fake transport and a fake clock: actions, lists, timeouts,
login, keepalive, connection loss."""
import hashlib

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from gateway.ami.actionid import ActionIdGenerator
from gateway.ami.parser import iter_messages
from gateway.ami.protocol import (AmiActionError, AmiAuthError, AmiClientProtocol,
                                  AmiConnectionLost, AmiNotConnected, AmiTimeout)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def make(events=None):
    clock = Clock()
    p = AmiClientProtocol(clock, on_event=(events.append if events is not None else None),
                          id_gen=ActionIdGenerator(host="t", pid=1, boot="b"), action_timeout=5)
    t = StringTransport()
    p.makeConnection(t)
    p.dataReceived(BANNER)
    return p, t, clock


def sent(t):
    msgs = list(iter_messages(t.value(), expect_banner=False))
    t.clear()
    return msgs


def result_of(d):
    out = []
    d.addBoth(out.append)
    return out


def test_banner_and_version():
    p, t, _ = make()
    assert p.banner.called and p.version == "11.0.0"


def test_plain_login_and_events_mask():
    p, t, _ = make()
    r = result_of(p.login("gateway", "s3cret", auth="plain", events="call,agent"))
    (login,) = sent(t)
    assert login.pairs[:4] == [("Action", "Login"), ("Username", "gateway"), ("Secret", "s3cret"),
                               ("Events", "call,agent")]
    p.dataReceived(f"Response: Success\r\nActionID: {login['ActionID']}\r\n"
                   "Message: Authentication accepted\r\n\r\n".encode())
    assert r and r[0].response["Message"] == "Authentication accepted"
    assert p.logged_in


def test_md5_login_never_sends_the_secret():
    p, t, _ = make()
    r = result_of(p.login("gateway", "s3cret"))
    (ch,) = sent(t)
    assert ch["Action"] == "Challenge" and ch["AuthType"] == "MD5"
    p.dataReceived(f"Response: Success\r\nActionID: {ch['ActionID']}\r\nChallenge: 183155795\r\n\r\n"
                   .encode())
    (login,) = sent(t)
    assert login["Key"] == hashlib.md5(b"183155795s3cret").hexdigest()
    assert "Secret" not in login and b"s3cret" not in login.to_bytes()
    p.dataReceived(f"Response: Success\r\nActionID: {login['ActionID']}\r\n\r\n".encode())
    assert r and not isinstance(r[0], Failure)


def test_failed_login_is_an_auth_error():
    p, t, _ = make()
    r = result_of(p.login("gateway", "wrong", auth="plain"))
    (login,) = sent(t)
    p.dataReceived(f"Response: Error\r\nActionID: {login['ActionID']}\r\n"
                   "Message: Authentication failed\r\n\r\n".encode())
    assert r[0].check(AmiAuthError)
    assert "Authentication failed" in str(r[0].value)
    assert not p.logged_in


def test_responses_matched_by_action_id_in_any_order():
    p, t, _ = make()
    a = result_of(p.send_action("Ping"))
    b = result_of(p.send_action("Command", {"Command": "core show version"}))
    pa, pb = sent(t)
    p.dataReceived(f"Response: Success\r\nActionID: {pb['ActionID']}\r\nMessage: Command output "
                   f"follows\r\nOutput: line 1\r\nOutput: line 2\r\n\r\n"
                   f"Response: Success\r\nActionID: {pa['ActionID']}\r\nPing: Pong\r\n\r\n".encode())
    assert a[0].response["Ping"] == "Pong"
    assert b[0].response.getall("Output") == ["line 1", "line 2"]


def test_response_without_action_id_goes_to_the_oldest_waiting_action():
    p, t, _ = make()
    a = result_of(p.send_action("Ping"))
    sent(t)
    p.dataReceived(b"Response: Success\r\nPing: Pong\r\n\r\n")
    assert a and a[0].response["Ping"] == "Pong"


def test_error_response_fails_the_action():
    p, t, _ = make()
    r = result_of(p.send_action("NoSuchAction"))
    (m,) = sent(t)
    p.dataReceived(f"Response: Error\r\nActionID: {m['ActionID']}\r\nMessage: Invalid/unknown "
                   "command: NoSuchAction. Use Action: ListCommands to show available commands."
                   "\r\n\r\n".encode())
    assert r[0].check(AmiActionError) and "Invalid/unknown command" in str(r[0].value)


def test_list_actions_are_collected_whatever_their_event_names():
    events = []
    p, t, _ = make(events)
    r = result_of(p.send_action("SomeFutureListAction"))
    (m,) = sent(t)
    aid = m["ActionID"]
    p.dataReceived(f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n"
                   f"Message: Things will follow\r\n\r\n"
                   f"Event: ThingOne\r\nActionID: {aid}\r\nX: 1\r\n\r\n"
                   f"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/x-1\r\n\r\n"
                   f"Event: ThingTwo\r\nX: 2\r\nActionID: {aid}\r\n\r\n".encode())
    assert not r
    p.dataReceived(f"Event: ThingsDone\r\nActionID: {aid}\r\nEventList: Complete\r\n"
                   f"ListItems: 2\r\n\r\n".encode())
    res = r[0]
    assert [e.name for e in res.events] == ["ThingOne", "ThingTwo"]
    assert res.complete.name == "ThingsDone" and res.complete["ListItems"] == "2"
    assert [e.name for e in events] == ["Newchannel"]       # unrelated events still flow


def test_list_with_error_response_fails():
    p, t, _ = make()
    r = result_of(p.send_action("QueueStatus"))
    (m,) = sent(t)
    p.dataReceived(f"Response: Error\r\nActionID: {m['ActionID']}\r\nMessage: Permission denied"
                   "\r\n\r\n".encode())
    assert r[0].check(AmiActionError)


def test_timeout_per_action_on_the_clock():
    p, t, clock = make()
    fast = result_of(p.send_action("Ping", timeout=1))
    slow = result_of(p.send_action("CoreShowChannels", timeout=30))
    clock.advance(1.01)
    assert fast[0].check(AmiTimeout) and not slow
    clock.advance(29)
    assert slow[0].check(AmiTimeout)
    assert not p.pending


def test_list_timeout_covers_the_whole_list():
    p, t, clock = make()
    r = result_of(p.send_action("CoreShowChannels", timeout=2))
    (m,) = sent(t)
    p.dataReceived(f"Response: Success\r\nActionID: {m['ActionID']}\r\nEventList: start\r\n\r\n"
                   .encode())
    clock.advance(2.5)
    assert r[0].check(AmiTimeout)


def test_connection_lost_fails_every_pending_action():
    p, t, _ = make()
    a = result_of(p.send_action("Ping"))
    b = result_of(p.send_action("Originate", {"Channel": "PJSIP/1@t"}))
    p.connectionLost(Failure(ConnectionError("gone")))
    assert a[0].check(AmiConnectionLost) and b[0].check(AmiConnectionLost)
    assert "Originate" in str(b[0].value)
    c = result_of(p.send_action("Ping"))
    assert c[0].check(AmiNotConnected)


def test_keepalive_drops_a_half_open_connection():
    p, t, clock = make()
    p.start_keepalive(interval=5, timeout=2)
    clock.advance(5)
    (ping,) = sent(t)
    assert ping["Action"] == "Ping"
    p.dataReceived(f"Response: Success\r\nActionID: {ping['ActionID']}\r\nPing: Pong\r\n\r\n"
                   .encode())
    clock.advance(5)
    assert sent(t)[0]["Action"] == "Ping"
    assert not t.disconnecting
    clock.advance(2.01)                 # no Pong this time
    assert t.disconnecting              # aborted
    p.connectionLost(Failure(ConnectionError("aborted")))
    clock.advance(60)                   # the keepalive stopped with the connection
    assert t.value() == b""


def test_event_handler_errors_do_not_stop_the_stream():
    seen = []

    def handler(msg):
        seen.append(msg.name)
        if msg.name == "Bad":
            raise RuntimeError("boom")
    clock = Clock()
    p = AmiClientProtocol(clock, on_event=handler)
    p.makeConnection(StringTransport())
    p.dataReceived(BANNER + b"Event: Bad\r\n\r\nEvent: Good\r\n\r\n")
    assert seen == ["Bad", "Good"]
    assert p.events_received == 2


def test_action_with_a_line_break_is_refused_before_sending():
    p, t, _ = make()
    r = result_of(p.send_action("Originate", {"CallerID": "evil\r\nAction: Command"}))
    assert r[0].check(ValueError) and t.value() == b""


def test_a_response_nobody_waits_for_is_dropped_and_logged_only_at_debug(monkeypatch):
    from twisted.logger import globalLogPublisher

    import gateway.logs
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        events = []
        p, t, _ = make(events)
        stray = b"Response: Success\r\nActionID: nobody-1\r\nMessage: Pong\r\n\r\n"
        monkeypatch.setattr(gateway.logs, "_debug", False)
        p.dataReceived(stray + b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n")
        monkeypatch.setattr(gateway.logs, "_debug", True)
        p.dataReceived(stray.replace(b"nobody-1", b"nobody-2"))
    finally:
        globalLogPublisher.removeObserver(seen)
    # The stream goes on past the stray response either way; the debug line is there only
    # when debug logging is on.
    assert [e.name for e in events] == ["FullyBooted"] and p.events_received == 1
    stray_lines = [e for e in seen if "nobody waits" in (e.get("log_format") or "")]
    assert [e["msg"]["ActionID"] for e in stray_lines] == ["nobody-2"]


def test_start_logging_sets_whether_debug_lines_are_built(monkeypatch):
    import io

    import gateway.logs
    began = []
    monkeypatch.setattr(gateway.logs.globalLogBeginner, "beginLoggingTo",
                        lambda observers, **kw: began.append(observers))
    monkeypatch.setattr(gateway.logs, "_debug", False)
    gateway.logs.start_logging("text", "debug", io.StringIO())
    assert gateway.logs.debug_enabled() and len(began) == 1
    gateway.logs.start_logging("json", "info", io.StringIO())
    assert not gateway.logs.debug_enabled()
