"""Replay the FastAGI sessions recorded from a real Asterisk 22 against our server.

The server side runs a flow that sends the very commands the recording gateway sent, through the
session API; the test checks (1) that our session writes them byte for byte as recorded, and
(2) what each reply became (value, hang-up, dead channel), including the HANGUP line that
arrives between a command and its own reply, and a prompt that does not exist (result=-1 with
no HANGUP line: not played, the call goes on).  Replayed in memory (whole, and one byte at a
time) and over real loopback TCP with the emulator.
"""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ivr.agi import AgiDeadChannel, ChannelHungUp
from ivr.agi.server import FastAgiFactory
from ivr.agi.session import Collected, Played
from ivr.emulator.channel import split_args
from ivr.emulator.inmemory import InMemoryCall
from ivr.emulator.transcript import Transcript, TranscriptResponder, replay_transcript
from tests._paths import ASTERISK, asterisk

HU, DEAD = "hung_up", "dead_channel"

EXPECTED = {
    "hotline-abandoned": ["119", HU, None],
    "hotline-answered": ["110", None, "2", None, "13805761234"],
    "login-eventmask": ["110", "2"],
    "order-call-getdata": [None, Played(None, 3520), Collected("2", False), Collected("", True), None, None],
    "order-call-press1": [None, "0427", Played(None, 3520), Collected("1", False), HU, None, None, DEAD],
    "order-call-prompts": [None, "0427", Played("1", 9760), HU, None, DEAD, DEAD],
    "order-call-silent": [None, None, None, None],
    # A missing prompt is not a hang-up: not played, and the call goes on (the next prompt plays,
    # the key is read, the channel is up) until the commander really hangs up.
    "order-call-missing-prompts": [None, Played(None, 0, played=False), "-1", "-1",
                                   Collected("", False, played=False), "0", Played(None, 3520), "1", 6,
                                   HU, DEAD, DEAD, DEAD],
}
HANGUP_SEEN_AT = {      # index of the first command after which the HANGUP line had been seen
    "hotline-abandoned": 2, "order-call-press1": 5, "order-call-prompts": 4,
    "order-call-missing-prompts": 10,
}


async def run_recorded(s, line: str):
    """The session method for a recorded command line."""
    a = split_args(line)
    verb = " ".join(a[:2])
    if a[0] == "ANSWER":
        return await s.answer()
    if a[0] == "HANGUP":
        return (await s.command("HANGUP")) and None     # raw: we want to see the 511
    if verb == "GET VARIABLE":
        return await s.get_variable(a[2])
    if verb == "GET FULL":
        return await s.get_full_variable(a[3])
    if verb == "SET VARIABLE":
        return await s.set_variable(a[2], a[3])
    if a[0] == "VERBOSE":
        return await s.verbose(a[1], int(a[2]))
    if verb == "STREAM FILE":
        return await s.stream_file(a[2], a[3])
    if verb == "SAY DIGITS":
        return await s.say_digits(a[2], a[3])
    if verb == "GET DATA":
        return await s.get_data(a[2], int(a[3]), int(a[4]))
    if verb == "WAIT FOR":
        return await s.wait_for_digit(int(a[3]))
    if verb == "CHANNEL STATUS":
        return await s.channel_status()
    if verb in ("CONTROL STREAM", "GET OPTION") or a[0] == "EXEC":
        return (await s.command(line)).result       # no session method: the flows do not use them
    raise AssertionError(f"unmapped recorded command {line!r}")


def recorded_flow(transcript: Transcript, outcomes: list, hangup_flags: list):
    async def flow(s):
        for line in transcript.commands:
            try:
                outcomes.append(await run_recorded(s, line))
            except ChannelHungUp:
                outcomes.append(HU)
            except AgiDeadChannel:
                outcomes.append(DEAD)
            hangup_flags.append(s.hung_up)
    return flow


NAMES = sorted(EXPECTED)


def test_every_recorded_agi_session_is_covered():
    recorded = {p.name.split(".")[0] for p in ASTERISK.glob("*.agi.jsonl")}
    assert recorded == set(EXPECTED)


def check(name, sent, outcomes, flags):
    t = Transcript.load(ASTERISK / f"{name}.agi.jsonl")
    assert sent == t.commands                       # byte-for-byte what the recorded gateway sent
    assert outcomes == EXPECTED[name]
    first = HANGUP_SEEN_AT.get(name)
    assert flags == [first is not None and i >= first for i in range(len(flags))]


@pytest.mark.parametrize("chunk", [0, 1, 7])
@pytest.mark.parametrize("name", NAMES)
def test_replay_in_memory(name, chunk):
    t = Transcript.load(asterisk(f"{name}.agi.jsonl"))
    outcomes, flags = [], []
    script = t.environment["agi_network_script"].split("?")[0]
    factory = FastAgiFactory(Clock(), {script: recorded_flow(t, outcomes, flags)})
    responder, sent = TranscriptResponder(t), []

    def respond(line):
        sent.append(line)
        return responder(line)
    call = InMemoryCall(factory, "".join(t.env_chunks).encode(), respond, Clock(), chunk=chunk)
    assert call.closed_by_gateway
    assert call.protocol.request.call_id == t.environment["agi_uniqueid"]
    assert call.protocol.garbage_count == 0
    check(name, sent, outcomes, flags)


@pytest.mark.parametrize("name", NAMES)
@pytest_twisted.ensureDeferred
async def test_replay_over_tcp(name):
    from twisted.internet import reactor
    t = Transcript.load(asterisk(f"{name}.agi.jsonl"))
    outcomes, flags = [], []
    script = t.environment["agi_network_script"].split("?")[0]
    factory = FastAgiFactory(reactor, {script: recorded_flow(t, outcomes, flags)})
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        result = await Deferred.fromCoroutine(replay_transcript(
            reactor, "127.0.0.1", port.getHost().port, ASTERISK / f"{name}.agi.jsonl")).addTimeout(5, reactor)
    finally:
        await port.stopListening()
    assert result.closed_by == "gateway"
    check(name, result.sent, outcomes, flags)
    assert result.matches


def test_replay_at_the_recorded_pace_on_a_clock():
    """order-call-getdata: GET DATA answered 2.76 s after it was sent, as recorded."""
    t = Transcript.load(asterisk("order-call-getdata.agi.jsonl"))
    assert 2.7 < t.delays[2] < 2.8
    outcomes, flags = [], []
    clock = Clock()
    factory = FastAgiFactory(clock, {"order": recorded_flow(t, outcomes, flags)})
    call = InMemoryCall(factory, "".join(t.env_chunks).encode(), TranscriptResponder(t, pace=1.0), clock)

    def until(seconds):
        while clock.seconds() < seconds - 1e-9:
            call.advance(0.01)
    until(0.5)
    assert len(outcomes) == 2                   # STREAM FILE answered after 0.44 s; GET DATA still waiting
    until(3.1)
    assert len(outcomes) == 2
    until(3.3)
    assert len(outcomes) == 3 and outcomes[2] == Collected("2", False)
    until(6.0)
    assert outcomes == EXPECTED["order-call-getdata"] and call.closed_by_gateway
