"""The classic-AGI fallback (pyst2): answers spooled to disk while the gateway is down, run as
Asterisk runs it (a child process on stdin/stdout, answered by the emulator), then taken in."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest_twisted
from twisted.internet.defer import fail

from ivr.drill import DrillKeypadSink
from ivr.emulator import HangUp, Press, ScriptedCaller
from ivr.emulator.classic import run_classic_agi
from ivr.journal import MemoryJournal
from ivr.refusals import RefusalAudit
from ivr.spool import SpoolIntake
from ivr.token_gate import CallTokenGate
from ivr.tokens import CallTokens

REPO = Path(__file__).resolve().parent.parent
PHONE = "+8613805761234"
TOKENS = CallTokens(b"fallback-test-key-32-bytes-long!")
VARS = {"ORDER_CODE": "0427", "YIHU_PHONE": PHONE, "YIHU_DELIVERY": "12"}


def gate(reactor):
    """The gateway's token gate (used tokens in memory here: the database case is test_ivr_trust)."""
    return CallTokenGate(reactor, None, TOKENS, RefusalAudit(reactor, None))


def fallback(reactor, spool, moves, variables=None, sounds=None):
    argv = [sys.executable, "-m", "ivr.fallback_agi", "--spool", str(spool), "--menu-timeout-ms", "100"]
    return run_classic_agi(reactor, argv, caller=ScriptedCaller(moves), variables=variables or VARS,
                           uniqueid="yihu-order-0427-12-1", sounds=sounds).addTimeout(30, reactor)


def spooled(spool):
    return [json.loads(p.read_text()) for p in sorted((spool / "new").glob("*.json"))]


@pytest_twisted.ensureDeferred
async def test_answer_spooled_before_confirmation_then_taken_in(tmp_path):
    from twisted.internet import reactor
    spool = tmp_path / "spool"
    token = TOKENS.variables("12", PHONE, reactor.seconds(), 30)
    record = await fallback(reactor, spool, [Press("2")], {**VARS, **token})
    assert record.exit_code == 0
    [rec] = spooled(spool)
    assert (rec["order_code"], rec["digits"], rec["phone"], rec["call_id"]) == ("0427", "2", PHONE,
                                                                                 "yihu-order-0427-12-1")
    assert rec["token"] == token["YIHU_TOKEN"] and rec["started_at"] <= rec["spooled_at"]
    assert record.played[-3:] == ["yihu/recorded", "yihu/status-arrived", "yihu/goodbye"]
    assert not list((spool / "tmp").iterdir())

    # the gateway comes back
    journal, sink = MemoryJournal(reactor), DrillKeypadSink({})
    counts = await SpoolIntake(reactor, spool, journal, sink, tokens=gate(reactor)).take_in()
    assert counts == {"answers": 1, "no_answer": 0, "bad": 0, "failed": 0, "refused": 0}
    [a] = sink.answers
    assert (a.order_code, a.digit, a.caller, a.raw_id) == ("0427", "2", PHONE, 1)
    assert journal.entries[0].delivery_id == 12 and journal.entries[0].state == "new"
    assert not list((spool / "new").iterdir()) and len(list((spool / "done").iterdir())) == 1
    # taken in once only
    assert await SpoolIntake(reactor, spool, journal, sink).take_in() == {"answers": 0, "no_answer": 0,
                                                                          "bad": 0, "failed": 0, "refused": 0}


@pytest_twisted.ensureDeferred
async def test_silent_and_hung_up_calls_are_spooled_as_no_answer(tmp_path):
    from twisted.internet import reactor
    spool = tmp_path / "spool"
    await fallback(reactor, spool, [])
    await fallback(reactor, spool, [HangUp()])
    notes = sorted(r["note"] for r in spooled(spool))
    assert notes == ["no answer: hung up before keying an answer", "no answer: no key pressed"]
    journal = MemoryJournal(reactor)
    counts = await SpoolIntake(reactor, spool, journal, DrillKeypadSink({})).take_in()
    assert counts["no_answer"] == 2 and len(journal.no_answers) == 2


@pytest_twisted.ensureDeferred
async def test_garbage_in_the_spool_is_set_aside(tmp_path):
    from twisted.internet import reactor
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "1-x.json").write_bytes(b"\xff\xfe not json")
    (tmp_path / "new" / "2-y.json").write_text(json.dumps({"digits": "9", "order_code": "1", "spooled_at": 1}))
    counts = await SpoolIntake(reactor, tmp_path, MemoryJournal(reactor), DrillKeypadSink({})).take_in()
    assert counts["bad"] == 2 and len(list((tmp_path / "bad").iterdir())) == 2


@pytest_twisted.ensureDeferred
async def test_engine_refusing_to_take_it_keeps_the_file_for_a_person(tmp_path):
    from twisted.internet import reactor
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "1-x.json").write_text(json.dumps(
        {"digits": "1", "order_code": "0427", "spooled_at": 1764468000.0, "phone": PHONE, "call_id": "c"}))

    class Down(DrillKeypadSink):
        def keypad_answer(self, answer):
            return fail(RuntimeError("engine down"))
    journal = MemoryJournal(reactor)
    counts = await SpoolIntake(reactor, tmp_path, journal, Down({})).take_in()
    assert counts["failed"] == 1 and len(journal.entries) == 1      # the raw key is kept anyway
    assert (tmp_path / "failed" / "1-x.json").exists()


@pytest_twisted.ensureDeferred
async def test_a_spool_file_without_the_calls_token_answers_for_no_team(tmp_path):
    from twisted.internet import reactor
    (tmp_path / "new").mkdir()
    now = reactor.seconds()
    good = TOKENS.variables("12", PHONE, now, 30)["YIHU_TOKEN"]
    records = {
        "1-none.json": {},                                                     # no token at all
        "2-other.json": {"token": TOKENS.variables("13", PHONE, now, 30)["YIHU_TOKEN"]},   # another delivery's
        "3-late.json": {"token": good, "started_at": now + 1000, "spooled_at": now + 1010},   # past its expiry
        "4-good.json": {"token": good, "started_at": now, "spooled_at": now + 40},
        "5-again.json": {"token": good, "started_at": now, "spooled_at": now + 41},         # a copy: used
    }
    for name, extra in records.items():
        (tmp_path / "new" / name).write_text(json.dumps(
            {"digits": "2", "order_code": "0427", "spooled_at": now, "phone": PHONE, "call_id": name,
             "delivery_id": "12", **extra}))
    journal, sink = MemoryJournal(reactor), DrillKeypadSink({})
    counts = await SpoolIntake(reactor, tmp_path, journal, sink, tokens=gate(reactor)).take_in()
    assert counts["answers"] == 1 and counts["refused"] == 4
    assert [a.call_id for a in sink.answers] == ["4-good.json"]
    assert sorted(p.name for p in (tmp_path / "refused").iterdir()) == [
        "1-none.json", "2-other.json", "3-late.json", "5-again.json"]
    assert [e.state for e in journal.entries].count("refused") == 4      # kept raw, as refused

@pytest_twisted.ensureDeferred
async def test_without_prompts_the_key_is_still_read_and_spooled(tmp_path):
    """pyst2 raises on every result=-1; a missing prompt (no hang-up) must not end the call."""
    from twisted.internet import reactor

    from ivr.emulator.sounds import SoundLibrary
    spool = tmp_path / "spool"
    record = await fallback(reactor, spool, [Press("3")], sounds=SoundLibrary.bare())
    assert record.exit_code == 0
    [rec] = spooled(spool)
    assert (rec["order_code"], rec["digits"]) == ("0427", "3")
    assert "WAIT FOR DIGIT 100" in record.commands and "yihu/order-menu" in record.channel.unplayable
