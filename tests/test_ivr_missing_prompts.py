"""Prompts Asterisk cannot play (file missing on the Asterisk host): as Asterisk 22 answers
(`200 result=-1 endpos=0` for STREAM FILE, `200 result=-1` for GET DATA, no HANGUP line, the
channel still up), the call goes on: the menu is still offered, the key still read, and the
prompt is logged and counted.  Only the HANGUP line or a channel really gone ends the call."""
from __future__ import annotations

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from gateway import metrics
from ivr.drill import DrillKeypadSink
from ivr.emulator import EmulatedChannel, HangUp, Press, ScriptedCaller
from ivr.emulator.channel import DEAD, Reply
from ivr.emulator.sounds import SoundLibrary
from tests.test_ivr_flows import COMMANDER, ORDER_VARS, Call, hotline, order_call


def bare(moves=(), variables=ORDER_VARS, callerid="057687770110"):
    """An Asterisk on which the project's prompts were never installed."""
    return EmulatedChannel(caller=ScriptedCaller(moves), variables=dict(variables), callerid=callerid,
                           sounds=SoundLibrary.bare())


def unplayable(script, prompt):
    return metrics.AGI_PROMPTS_UNPLAYABLE.labels(script, prompt)._value.get()


@pytest.fixture
def logged():
    lines = []

    def observer(event):
        lines.append(formatEvent(event))
    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def test_emulator_answers_a_missing_file_as_asterisk_does():
    ch = bare([Press("1")])
    assert ch.handle("ANSWER").lines == ["200 result=0"]
    assert ch.handle('STREAM FILE yihu/order-intro "01234"').lines == ["200 result=-1 endpos=0"]
    assert ch.handle("GET DATA yihu/order-menu 5000 1").lines == ["200 result=-1"]
    assert ch.alive and ch.played == [] and ch.unplayable == ["yihu/order-intro", "yihu/order-menu"]
    # no HANGUP line, and the caller's key is still there for the next command
    assert ch.handle("CHANNEL STATUS").lines == ["200 result=6"]
    assert ch.handle("WAIT FOR DIGIT 5000").lines == ["200 result=49"]
    assert ch.handle('STREAM FILE beep ""').lines == ["200 result=0 endpos=8000"]


def test_shipped_prompts_are_what_the_emulated_asterisk_has_by_default():
    ch = EmulatedChannel(caller=ScriptedCaller())
    assert ch.handle('STREAM FILE yihu/order-intro ""').lines == ["200 result=0 endpos=8000"]
    assert ch.handle('STREAM FILE yihu/no-such-prompt ""').lines == ["200 result=-1 endpos=0"]
    assert ch.handle('STREAM FILE /nonexistent/order-abc ""').lines == ["200 result=-1 endpos=0"]


def test_order_call_without_prompts_still_offers_the_menu_and_records_the_key(logged):
    before = unplayable("order", "yihu/order-menu")
    c = order_call([Press("1")], channel=bare([Press("1")]))
    i = c.commands.index("GET DATA yihu/order-menu 5000 1")
    assert c.commands[i + 1] == "WAIT FOR DIGIT 5000"           # the key read all the same
    [answer] = c.sink.answers
    assert (answer.digit, answer.order_code, answer.caller) == ("1", "0427", COMMANDER)
    assert c.journal.no_answers == []
    assert c.channel.hung_up_by == "gateway"                     # the call ended by us, normally
    assert "digits:0427" in c.played                             # what could be played was
    assert unplayable("order", "yihu/order-menu") == before + 1
    assert any("yihu-order-0427-7-1" in ln and "yihu/order-intro" in ln and "could not play" in ln
               for ln in logged)


def test_order_call_without_prompts_silent_commander_is_no_answer_not_a_hang_up():
    c = order_call([], channel=bare([]))
    assert c.sink.answers == []
    [na] = c.journal.no_answers
    assert "no key pressed 2 times" in na.note
    assert c.commands.count("WAIT FOR DIGIT 5000") == 2


def test_order_call_without_prompts_commander_hangs_up():
    c = order_call([], channel=bare([HangUp()]))
    [na] = c.journal.no_answers
    assert "hung up before keying" in na.note
    assert c.channel.hung_up_by == "caller" and c.mem.closed_by_gateway


def test_missing_prompt_then_hangup_line_ends_the_call():
    """A caller gone at a missing prompt: -1 endpos=0, then Asterisk's HANGUP line and 511."""
    answers = iter([["200 result=0"], ["200 result=1 (0427)"], ["200 result=0"], ["200 result=0"],
                    ["200 result=-1 endpos=0"], ["HANGUP", DEAD]])
    sent = []

    def asterisk(line):
        sent.append(line)
        return Reply(next(answers, [DEAD]))
    c = order_call([], channel=asterisk)
    assert sent[4:] == ['STREAM FILE yihu/order-intro "01234"', 'SAY DIGITS 0427 "01234"']
    [na] = c.journal.no_answers
    assert "hung up before keying" in na.note and c.mem.closed_by_gateway


def test_stream_cut_after_it_started_is_a_hang_up_even_before_the_hangup_line():
    answers = iter([["200 result=0"], ["200 result=1 (0427)"], ["200 result=0"], ["200 result=0"],
                    ["200 result=-1 endpos=4120"]])
    sent = []

    def asterisk(line):
        sent.append(line)
        return Reply(next(answers, [DEAD]))
    c = order_call([], channel=asterisk)
    assert sent[-1] == 'STREAM FILE yihu/order-intro "01234"'      # nothing after it
    [na] = c.journal.no_answers
    assert "hung up before keying" in na.note


def test_feedback_line_without_prompts_still_reads_the_order_code():
    sink = DrillKeypadSink({COMMANDER: ["0427", "0431"]})
    moves = [Press(d) for d in "0431#"] + [Press("3")]
    c = Call("feedback", sink=sink, callerid="13805761234",
             channel=bare(moves, variables={}, callerid="13805761234"))
    [a] = sink.answers
    assert (a.order_code, a.digit) == ("0431", "3")


def test_hotline_without_greeting_still_takes_the_triage_key():
    before = unplayable("hotline", "yihu/hotline-110")
    c = hotline([], channel=bare([Press("2")], variables={"HOTLINE": "110"}, callerid="13805761234"))
    assert c.channel.variables["TRIAGE"] == "2" and c.channel.alive and c.mem.closed_by_gateway
    assert unplayable("hotline", "yihu/hotline-110") == before + 1


def test_overflow_message_missing_returns_the_caller_to_the_queue():
    c = Call("overflow", channel=bare([]))
    assert c.commands == ['STREAM FILE yihu/hotline-overflow ""']
    assert c.mem.closed_by_gateway and c.channel.alive


def test_emulator_answers_the_recorded_missing_prompts_session_as_asterisk_did():
    """Every command of order-call-missing-prompts, sent to the emulator (core sounds only, the
    commander presses 1, then hangs up during the second wait): the same replies, line for line,
    HANGUP line included (only a played file's endpos differs: it depends on the file)."""
    import re

    from ivr.emulator.transcript import Transcript
    from tests._paths import asterisk
    t = Transcript.load(asterisk("order-call-missing-prompts.agi.jsonl"))
    ch = EmulatedChannel(caller=ScriptedCaller([Press("1"), HangUp()]), sounds=SoundLibrary.bare())
    for command, chunks in t.exchanges:
        want = "".join(chunks).splitlines()
        got = ch.handle(command).lines
        if re.fullmatch(r"200 result=0 endpos=\d+", want[0]):
            assert re.fullmatch(r"200 result=0 endpos=\d+", got[0]) and len(got) == 1, command
        else:
            assert got == want, command
    assert ch.unplayable[:4] == ["yihu/no-such-intro"] * 2 + ["yihu/no-such-menu"] * 2
