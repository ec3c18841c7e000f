"""The Asterisk-side emulator: reply formats as in the transcripts, and calls over real TCP."""
from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import Deferred

from ivr.drill import DrillKeypadSink
from ivr.emulator import EmulatedChannel, HangUp, Press, ScriptedCaller, agi_environment, place_call
from ivr.emulator.channel import DEAD, split_args
from ivr.emulator.environment import environment_bytes
from ivr.emulator.transcript import Transcript
from ivr.journal import MemoryJournal
from ivr.service import make_fastagi_factory
from tests._paths import ASTERISK


def test_environment_block_matches_the_recording():
    t = Transcript.load(ASTERISK / "order-call-press1.agi.jsonl")
    env = agi_environment("order?order=0427", channel="Local/press1@order-call-00000023;1",
                          uniqueid="1796012532.70", callerid="057687770110", calleridname="Command Center",
                          context="gateway-out", extension="order", priority=2)
    assert environment_bytes(env) == "".join(t.env_chunks).encode()


def test_replies_as_asterisk_sends_them():
    ch = EmulatedChannel(caller=ScriptedCaller([Press("1", barge_in=True), Press("2"), HangUp()]),
                         variables={"ORDER_CODE": "0427"})
    assert ch.handle("ANSWER").lines == ["200 result=0"]
    assert ch.handle("GET VARIABLE ORDER_CODE").lines == ["200 result=1 (0427)"]
    assert ch.handle("GET VARIABLE NOPE").lines == ["200 result=0"]
    assert ch.handle('STREAM FILE please-try-call-later "0123456789"').lines[0].startswith("200 result=49 endpos=")
    assert ch.handle("GET DATA beep 5000 1").lines == ["200 result=2"]
    assert ch.handle('SAY DIGITS 0427 ""').lines == ["200 result=-1"]           # hangs up here
    assert ch.handle("SET VARIABLE ACK 1").lines == ["HANGUP", "200 result=1"]   # as order-call-prompts
    assert ch.handle('STREAM FILE goodbye ""').lines == [DEAD]
    assert ch.handle("HANGUP").lines == [DEAD]
    assert ch.handle("VERBOSE \"ack recorded\" 1").lines == ["200 result=1"]


def test_timeouts_as_asterisk_sends_them():
    ch = EmulatedChannel()
    assert ch.handle("GET DATA beep 2000 1").lines == ["200 result= (timeout)"]
    assert ch.handle("WAIT FOR DIGIT 3000").lines == ["200 result=0"]
    assert ch.handle('STREAM FILE beep ""').lines == ["200 result=0 endpos=8000"]


def test_get_data_digits_up_to_hash_or_max():
    ch = EmulatedChannel(caller=ScriptedCaller([Press("0427#"), Press("12345"), Press("12")]))
    assert ch.handle("GET DATA beep 8000 8").lines == ["200 result=0427"]
    assert ch.handle("GET DATA beep 8000 3").lines == ["200 result=123"]
    assert ch.handle("GET DATA beep 8000 8").lines == ["200 result=12 (timeout)"]


def test_errors_510_and_multiline_520():
    ch = EmulatedChannel()
    assert ch.handle("FROBNICATE now").lines == ["510 Invalid or unknown command"]
    lines = ch.handle("WAIT FOR DIGIT soon").lines
    assert lines[0] == "520-Invalid command syntax.  Proper usage follows:"
    assert lines[-1] == "520 End of proper usage."


def test_gateway_hangup_is_announced():
    ch = EmulatedChannel()
    assert ch.handle("HANGUP").lines == ["200 result=1", "HANGUP"]
    assert ch.handle("HANGUP").lines == [DEAD]        # as order-call-press1's last line


def test_argument_splitting_like_asterisk():
    assert split_args('SET VARIABLE X "a b\\"c"') == ["SET", "VARIABLE", "X", 'a b"c']
    assert split_args('STREAM FILE beep ""') == ["STREAM", "FILE", "beep", ""]


@pytest_twisted.ensureDeferred
async def test_drill_calls_over_tcp():
    """Three emulated calls at once against the real server on loopback."""
    from twisted.internet import reactor
    sink = DrillKeypadSink({"+8613805761234": ["0427", "0431"]})
    journal = MemoryJournal(reactor)
    factory = make_fastagi_factory(reactor, sink=sink, journal=journal)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    p = port.getHost().port
    try:
        calls = [
            place_call(reactor, "127.0.0.1", p, "order?order=0427", caller=ScriptedCaller([Press("1", after=0.01)]),
                       variables={"ORDER_CODE": "0427", "YIHU_PHONE": "+8613805761234"}),
            place_call(reactor, "127.0.0.1", p, "feedback", callerid="13805761234",
                       caller=ScriptedCaller([Press("0431#"), Press("2")])),
            place_call(reactor, "127.0.0.1", p, "hotline?line=122", callerid="13905769876",
                       caller=ScriptedCaller([HangUp()]), variables={"HOTLINE": "122"}),
        ]
        order, fb, hot = [await Deferred.fromCoroutine(c).addTimeout(5, reactor) for c in calls]
    finally:
        await port.stopListening()
    assert [r.closed_by for r in (order, fb, hot)] == ["gateway"] * 3
    assert sorted((a.order_code, a.digit) for a in sink.answers) == [("0427", "1"), ("0431", "2")]
    assert "yihu/status-received" in order.played and "yihu/status-arrived" in fb.played
    assert hot.channel.hung_up_by == "caller" and "HANGUP" not in hot.commands
    assert factory.active == set()


def test_drill_moves_parse():
    from ivr.emulator.__main__ import parse_moves
    from ivr.emulator import Silence
    assert parse_moves("0427#, !1,silence,hangup") == [Press("0427#"), Press("1", barge_in=True), Silence(),
                                                       HangUp()]
