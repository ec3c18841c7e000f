"""FastAGI server protocol: environment, replies, out-of-band HANGUP, errors, timeouts, closing."""
from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ivr.agi import (AgiConnectionLost, AgiDeadChannel, AgiInvalidCommand, AgiTimeout, AgiUsageError,
                     ChannelHungUp, parse_reply_line)
from ivr.agi.request import parse_request
from ivr.agi.server import FastAgiFactory
from ivr.emulator.environment import agi_environment, environment_bytes


# --- reply lines ---------------------------------------------------------------------------------

@pytest.mark.parametrize("line,result,data,endpos", [
    ("200 result=1 (0427)", "1", "0427", None),
    ("200 result= (timeout)", "", "timeout", None),
    ("200 result=49 endpos=9760", "49", None, 9760),
    ("200 result=-1", "-1", None, None),
    ("200 result=0 endpos=3520", "0", None, 3520),
    ("200 result=1 (Command Center with spaces)", "1", "Command Center with spaces", None),
    ("200 result=12 (timeout)", "12", "timeout", None),
])
def test_reply_lines_parse_as_asterisk_sends_them(line, result, data, endpos):
    p = parse_reply_line(line)
    assert p.kind == "reply"
    assert (p.reply.result, p.reply.data, p.reply.endpos) == (result, data, endpos)


@pytest.mark.parametrize("line,kind", [
    ("HANGUP", "hangup"), ("100 result=0 Trying...", "provisional"),
    ("520-Invalid command syntax.  Proper usage follows:", "usage_start"),
    ("511 Command Not Permitted on a dead channel or intercept routine", "reply"),
    ("510 Invalid or unknown command", "reply"), ("hello there", "garbage"), ("200 banana", "garbage"),
    ("", "garbage"), ("999 whatever", "garbage"),
])
def test_reply_line_kinds(line, kind):
    assert parse_reply_line(line).kind == kind


def test_request_names_script_and_query():
    r = parse_request({"agi_network_script": "hotline?line=110", "agi_uniqueid": "1.2", "agi_callerid": "unknown"})
    assert (r.script, r.params, r.call_id, r.caller) == ("hotline", {"line": "110"}, "1.2", None)
    r = parse_request({"agi_request": "agi://127.0.0.1:4573/order?order=0427"})
    assert (r.script, r.params) == ("order", {"order": "0427"})


# --- the protocol, synchronously ------------------------------------------------------------------

class Harness:
    """A server connection on a StringTransport; the flow is a test coroutine."""

    def __init__(self, flow, *, script="order?order=0427", command_timeout=10.0, deadline=None, **kw):
        self.clock = Clock()
        self.results = {}

        async def wrapped(session):
            self.session = session
            try:
                self.results["value"] = await flow(session)
            except Exception as e:
                self.results["error"] = e
                raise
        if deadline:
            wrapped.deadline = deadline
        name = script.split("?")[0]
        self.factory = FastAgiFactory(self.clock, {name: wrapped}, command_timeout=command_timeout, **kw)
        self.proto = self.factory.buildProtocol(None)
        self.tr = StringTransport()
        self.proto.makeConnection(self.tr)
        self.env = agi_environment(script, uniqueid="call-1")

    def start(self):
        self.proto.dataReceived(environment_bytes(self.env))

    def sent(self) -> list[str]:
        out = self.tr.value().decode()
        self.tr.clear()
        return out.splitlines()

    def reply(self, text: str):
        self.proto.dataReceived(text.encode())

    def lose(self):
        from twisted.python.failure import Failure
        from twisted.internet.error import ConnectionDone
        self.proto.connectionLost(Failure(ConnectionDone()))


def test_environment_then_one_command_at_a_time():
    async def flow(s):
        code = await s.get_variable("ORDER_CODE")
        digit = await s.wait_for_digit(3000)
        return code, digit
    h = Harness(flow)
    h.proto.dataReceived(environment_bytes(h.env)[:50])
    assert h.sent() == []                       # nothing before the blank line
    h.proto.dataReceived(environment_bytes(h.env)[50:])
    assert h.sent() == ["GET VARIABLE ORDER_CODE"]
    h.reply("200 result=1 (0427)\n")
    assert h.sent() == ["WAIT FOR DIGIT 3000"]
    h.reply("200 result=50\n")
    assert h.results["value"] == ("0427", "2")
    assert h.tr.disconnecting                  # closed when the flow ended
    assert h.session.request.env["agi_extension"] == "s"


def test_unsolicited_hangup_is_never_the_reply_to_a_command():
    """order-call-prompts: HANGUP arrives between SET VARIABLE and its own 200, then 511."""
    async def flow(s):
        await s.set_variable("ACK", "1")
        seen = s.hung_up
        await s.stream_file("goodbye")
        return seen
    h = Harness(flow)
    h.start()
    assert h.sent() == ["SET VARIABLE ACK 1"]
    h.reply("HANGUP\n")
    assert h.sent() == []                      # still waiting for SET VARIABLE's own reply
    assert h.session.hung_up
    h.reply("200 result=1\n")
    assert h.sent() == ['STREAM FILE goodbye ""']
    h.reply("511 Command Not Permitted on a dead channel or intercept routine\n")
    assert isinstance(h.results["error"], AgiDeadChannel)
    assert h.tr.disconnecting


def test_provisional_replies_are_skipped():
    async def flow(s):
        return await s.get_variable("X")
    h = Harness(flow)
    h.start()
    h.sent()
    h.reply("100 result=0 Trying...\n200 result=1 (y)\n")
    assert h.results["value"] == "y"


def test_510_and_multiline_520_are_errors_and_session_continues():
    async def flow(s):
        errors = []
        for cmd in ("FROB", "WAIT FOR DIGIT"):
            try:
                await s.command(cmd)
            except Exception as e:
                errors.append(e)
        errors.append(await s.get_variable("X"))
        return errors
    h = Harness(flow)
    h.start()
    assert h.sent() == ["FROB"]
    h.reply("510 Invalid or unknown command\n")
    assert h.sent() == ["WAIT FOR DIGIT"]
    # the usage text, chunked awkwardly, with a body line that looks like a reply
    h.reply("520-Invalid command syntax.  Proper usage follows:\n Usage: WAIT FOR DIGIT <timeout>\n")
    h.reply("200 result=1 is not the end\n\n520 End of proper")
    assert h.sent() == []
    h.reply(" usage.\n")
    assert h.sent() == ["GET VARIABLE X"]
    h.reply("200 result=0\n")
    e510, e520, value = h.results["value"]
    assert isinstance(e510, AgiInvalidCommand)
    assert isinstance(e520, AgiUsageError) and " Usage: WAIT FOR DIGIT <timeout>" in e520.usage
    assert value is None


def test_garbage_is_logged_kept_and_skipped():
    async def flow(s):
        return await s.get_variable("X")
    h = Harness(flow)
    h.start()
    h.sent()
    h.reply("\x00\xff binary noise\r\n200 result=1 (ok)\r\n")
    assert h.results["value"] == "ok"
    assert h.proto.garbage_count == 1 and b"binary noise" in h.proto.garbage[0]


def test_garbage_in_environment_is_kept_and_the_call_goes_on():
    async def flow(s):
        return s.request.script
    h = Harness(flow)
    h.proto.dataReceived(b"this is not agi\n" + environment_bytes(h.env))
    assert h.results["value"] == "order"
    assert h.proto.garbage_count == 1


def test_media_result_minus_one_means_the_caller_hung_up():
    async def flow(s):
        await s.say_digits("0427")
    h = Harness(flow)
    h.start()
    assert h.sent() == ['SAY DIGITS 0427 ""']
    h.reply("200 result=-1\n")
    assert isinstance(h.results["error"], ChannelHungUp)
    assert h.tr.disconnecting


def test_command_timeout_fails_the_command_and_closes():
    async def flow(s):
        await s.get_variable("X")
    h = Harness(flow, command_timeout=10.0)
    h.start()
    h.sent()
    h.clock.advance(9.9)
    assert "error" not in h.results
    h.clock.advance(0.2)
    assert isinstance(h.results["error"], AgiTimeout)
    assert h.tr.disconnecting
    h.reply("200 result=1 (late)\n")          # a late reply is not taken for anything


def test_wait_for_digit_deadline_includes_its_own_wait():
    async def flow(s):
        return await s.wait_for_digit(30000)
    h = Harness(flow, command_timeout=5.0)
    h.start()
    h.sent()
    h.clock.advance(31)
    assert not h.tr.disconnecting              # 30 s of waiting is what we asked for
    h.reply("200 result=0\n")
    assert h.results["value"] is None


def test_connection_lost_mid_command():
    async def flow(s):
        await s.wait_for_digit(3000)
    h = Harness(flow)
    h.start()
    h.lose()
    assert isinstance(h.results["error"], AgiConnectionLost)
    assert h.clock.getDelayedCalls() == []     # no timer left behind


def test_one_command_in_flight():
    seen = {}

    async def flow(s):
        first = s.protocol.send_command("GET VARIABLE A")
        try:
            await s.command("GET VARIABLE B")
        except Exception as e:
            seen["second"] = e
        return (await first).data
    h = Harness(flow)
    h.start()
    assert h.sent() == ["GET VARIABLE A"]
    h.reply("200 result=1 (a)\n")
    assert h.results["value"] == "a" and "in flight" in str(seen["second"])


def test_arguments_cannot_inject_commands():
    async def flow(s):
        await s.set_variable("X", "1\nHANGUP")
    h = Harness(flow)
    h.start()
    assert h.sent() == []
    assert isinstance(h.results["error"], ValueError)
    assert h.tr.disconnecting


def test_values_with_spaces_are_quoted():
    async def flow(s):
        await s.set_variable("NOTE", 'a "b" c')
        await s.verbose("ack recorded")
    h = Harness(flow)
    h.start()
    assert h.sent() == ['SET VARIABLE NOTE "a \\"b\\" c"']
    h.reply("200 result=1\n")
    assert h.sent() == ['VERBOSE "ack recorded" 1']


def test_unknown_script_closes_so_the_dialplan_carries_on():
    h = Harness(lambda s: None, script="order")
    h.env = agi_environment("nonsense?x=1")
    h.start()
    assert h.sent() == [] and h.tr.disconnecting


def test_no_environment_in_time_closes():
    h = Harness(lambda s: None)
    h.proto.dataReceived(b"agi_network: yes\n")
    h.clock.advance(5.1)
    assert h.tr.disconnecting


def test_flow_exception_closes_cleanly():
    async def flow(s):
        raise RuntimeError("bug")
    h = Harness(flow)
    h.start()
    assert h.tr.disconnecting and h.factory.active == set()


def test_flow_deadline_closes_the_connection():
    gate = Deferred()

    async def flow(s):
        await gate                              # e.g. a stuck database
        await s.get_variable("X")
    h = Harness(flow, deadline=15)
    h.start()
    h.clock.advance(14.9)
    assert not h.tr.disconnecting
    h.clock.advance(0.1)
    assert h.tr.disconnecting
    assert isinstance(h.results["error"], CancelledError)     # the stuck flow is ended, not leaked
    assert h.factory.active == set()
    h.lose()


def test_overlong_line_closes():
    async def flow(s):
        await s.get_variable("X")
    h = Harness(flow)
    h.start()
    h.reply("2" * 20000)
    assert h.tr.disconnecting


def test_metrics_count_sessions_and_errors_but_not_hangups():
    from gateway import metrics

    def value(metric, script):
        return metric.labels(script)._value.get()
    s0, e0, a0 = value(metrics.AGI_SESSIONS, "order"), value(metrics.AGI_ERRORS, "order"), metrics.AGI_ACTIVE._value.get()

    async def hangs_up(s):
        await s.wait_for_digit(1000)
    h = Harness(hangs_up)
    h.start()
    assert metrics.AGI_ACTIVE._value.get() == a0 + 1
    h.reply("200 result=-1\n")

    async def breaks(s):
        raise KeyError("bug")
    Harness(breaks).start()
    assert value(metrics.AGI_SESSIONS, "order") == s0 + 2
    assert value(metrics.AGI_ERRORS, "order") == e0 + 1            # the bug, not the hang-up
    assert metrics.AGI_ACTIVE._value.get() == a0


def test_hangup_right_after_the_environment():
    async def flow(s):
        try:
            await s.stream_file("yihu/order-intro")
        except AgiDeadChannel:
            return s.hung_up, "dead"
    h = Harness(flow)
    h.proto.dataReceived(environment_bytes(h.env) + b"HANGUP\n")
    assert h.sent() == ['STREAM FILE yihu/order-intro ""']
    h.reply("511 Command Not Permitted on a dead channel or intercept routine\n")
    assert h.results["value"] == (True, "dead") and h.tr.disconnecting
