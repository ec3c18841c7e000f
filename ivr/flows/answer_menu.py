"""The keypad answer to an order, shared by the order call and the feedback line.

    play the order ──► menu (GET DATA, one digit) ──► 1/2/3/4: store raw, commit, hand to the
         ▲                 │ 0: repeat                    feedback engine, say what was recorded
         └─────────────────┘ nothing twice: recorded as no answer, goodbye

A digit pressed while the order is still being read (barge-in) counts as pressed at the menu.
A menu Asterisk cannot play (its file missing) is still a menu: the key is read all the same.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Awaitable, Callable

from twisted.logger import Logger

from gateway.interfaces import FeedbackOutcome, ISituationSink, KeypadAnswer, SpokenReport
from ivr.agi.session import AgiSession, Collected
from ivr.journal import KeypadEntry, utc
from ivr.prompts import STATUS_BY_DIGIT, STATUS_PROMPT, sound

log = Logger()

ANSWER_KEYS = "01234"          # what may interrupt the reading of the order
SITUATION_KEY = "5"            # a spoken situation report (major orders), recorded


@dataclass(frozen=True)
class MenuSettings:
    timeout_ms: int = 5000     # per menu prompt, after it has played
    max_no_input: int = 2      # "no input twice" = no answer
    max_invalid: int = 3
    max_plays: int = 4         # the order read at most this often (0 = repeat)
    recordings_dir: str = ""   # where Asterisk writes spoken situation reports (key 5); "" = key 5 off
    record_max_ms: int = 180_000
    record_silence_s: int = 6  # a report ends after this much silence (or with #)


@dataclass
class AnswerCall:
    """Who and what the answer is about."""
    script: str
    caller: str | None
    order_code: str
    offer_assembled: bool = False        # say "4 = assembled" (leaving-the-city teams)
    offer_situation: bool = False        # say "5 = situation report" (major orders)
    delivery_id: int | None = None
    keyed: bool = False                  # an answer key was stored (a hang-up after it is no "no answer")
    identified_by: str = ""              # order_call_token / caller_id / caller_id+pin: kept with the answer


async def take_answer(session: AgiSession, call: AnswerCall, *, sink, journal, reactor,
                      play_order: Callable[[], Awaitable[str | None]],
                      settings: MenuSettings = MenuSettings(), speech=None) -> str:
    """Run the menu; returns recorded / refused / no_answer / error.  Hang-ups propagate."""
    menu = sound("order_menu_assembled" if call.offer_assembled else "order_menu")
    if call.offer_situation and settings.recordings_dir and ISituationSink.providedBy(sink):
        await session.stream_file(sound("situation_hint"))       # once: the menu itself is unchanged
    no_input = invalid = plays = 0
    replay = True
    while True:
        digit = None
        if replay:
            if plays >= settings.max_plays:
                return await _no_answer(session, call, journal, "order replayed too often; no answer keyed")
            plays += 1
            replay = False
            digit = await play_order()
        if digit is None:
            got = await ask(session, menu, settings.timeout_ms, 1)
            digit = got.digits[:1] or None
        if digit is None:
            no_input += 1
            if no_input >= settings.max_no_input:
                return await _no_answer(session, call, journal, f"no key pressed {no_input} times")
            continue
        if digit == "0":
            await journal.record(_entry(session, call, digit, "parsed", "repeat the order"))
            replay = True
            continue
        if digit == SITUATION_KEY and settings.recordings_dir and ISituationSink.providedBy(sink):
            return await _record_situation(session, call, sink=sink, journal=journal, reactor=reactor,
                                           settings=settings)
        if digit not in STATUS_BY_DIGIT:
            await journal.record(_entry(session, call, digit, "garbage", "not a menu key"))
            invalid += 1
            if invalid >= settings.max_invalid:
                return await _no_answer(session, call, journal, f"{invalid} invalid keys; no answer")
            await session.stream_file(sound("invalid_key"))
            continue
        return await _answer(session, call, digit, sink=sink, journal=journal, reactor=reactor,
                             speech=speech)


async def ask(session: AgiSession, prompt: str, timeout_ms: int, max_digits: int) -> Collected:
    """GET DATA; where Asterisk could not play the prompt (it answers at once, having read no
    key), the keys are read with WAIT FOR DIGIT instead, '#' ending them, as GET DATA would."""
    got = await session.get_data(prompt, timeout_ms, max_digits)
    if got.played:
        return got
    keyed = ""
    while len(keyed) < max_digits:
        digit = await session.wait_for_digit(timeout_ms)
        if digit is None:
            return Collected(keyed, True, played=False)
        if digit == "#":
            break
        keyed += digit
    return Collected(keyed, False, played=False)


async def _answer(session, call: AnswerCall, digit: str, *, sink, journal, reactor, speech) -> str:
    # Durable before acknowledged: the keypress and what the engine made of it are committed
    # before anything is said to the caller.
    entry = _entry(session, call, digit, "new", None)
    answer = KeypadAnswer(raw_id=None, caller=call.caller or "", digit=digit, call_id=session.call_id,
                          received_at=utc(reactor), order_code=call.order_code,
                          identified_by=call.identified_by)
    together = getattr(sink, "keypad_answer_journalled", None)
    if together is not None:
        # One commit for the raw keypress and its verdict (the engine writes the journal's row).
        journalled, judged = together(answer, journal, entry)
        try:
            raw_id = await journalled
        except BaseException:
            judged.addErrback(lambda _f: None)      # the same failure, raised here
            raise
    else:
        raw_id = await journal.record(entry)
        judged = None
    call.keyed = True
    try:
        if judged is None:
            judged = sink.keypad_answer(replace(answer, raw_id=raw_id))
        outcome: FeedbackOutcome = await judged
    except Exception:  # noqa: BLE001 - the engine failing must not go unheard by the caller
        log.failure("keypad answer {digit} for order {code} (call {call_id}, raw {raw_id}) not taken "
                    "by the feedback engine", digit=digit, code=call.order_code, call_id=session.call_id,
                    raw_id=raw_id)
        await session.stream_file(sound("system_error"))
        await _goodbye(session)
        return "error"
    log.info("call {call_id} ({script}): order {code} key {digit} -> {status} accepted={ok}",
             call_id=session.call_id, script=call.script, code=call.order_code, digit=digit,
             status=outcome.status, ok=outcome.accepted)
    if outcome.accepted:
        status = outcome.status or STATUS_BY_DIGIT[digit]
        await session.stream_file(sound("recorded"))
        if status in STATUS_PROMPT:
            await session.stream_file(sound(STATUS_PROMPT[status]))
        await session.stream_file(sound("for_order"))
        await session.say_digits(outcome.order_code or call.order_code)
        await _goodbye(session)
        return "recorded"
    # Refused: the engine's own words where they can be spoken, the fixed prompt otherwise.
    spoken = await speech.render(outcome.message) if speech is not None and outcome.message else None
    await session.stream_file(spoken or sound("not_recorded"))
    await _goodbye(session)
    return "refused"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


async def _record_situation(session, call: AnswerCall, *, sink, journal, reactor, settings: MenuSettings) -> str:
    """Key 5: the caller speaks the situation after the tone; Asterisk records it (RECORD FILE).
    The key and the recording are committed, then kept on the order's timeline, then confirmed."""
    await session.stream_file(sound("record_situation"))
    base = f"{settings.recordings_dir.rstrip('/')}/{_UNSAFE.sub('_', call.order_code)}-" \
           f"{_UNSAFE.sub('_', session.call_id)}-{int(reactor.seconds() * 1000)}"
    rec = await session.record_file(base, "wav", "#", settings.record_max_ms, silence_s=settings.record_silence_s)
    if rec.ended == "randomerror":
        # This Asterisk could not play its beep: record without it rather than not at all.
        rec = await session.record_file(base, "wav", "#", settings.record_max_ms, beep=False,
                                        silence_s=settings.record_silence_s)
    if rec.ended not in ("dtmf", "timeout", "hangup") or rec.endpos <= 0:
        note = f"situation report not recorded: RECORD FILE ended {rec.ended} endpos={rec.endpos}"
        await journal.record(_entry(session, call, SITUATION_KEY, "refused", note))
        log.error("call {call_id} ({script}): order {code}: {note} ({path})", call_id=session.call_id,
                  script=call.script, code=call.order_code, note=note, path=base)
        if session.hung_up:
            return "refused"
        await session.stream_file(sound("not_recorded"))
        await _goodbye(session)
        return "refused"
    raw_id = await journal.record(_entry(session, call, SITUATION_KEY, "new",
                                         f"situation report recorded {base}.wav {rec.seconds:.1f} s"))
    call.keyed = True
    report = SpokenReport(raw_id, call.caller or "", call.order_code, session.call_id, f"{base}.wav", rec.seconds,
                          utc(reactor), call.identified_by)
    try:
        outcome: FeedbackOutcome = await sink.situation_recorded(report)
    except Exception:  # noqa: BLE001 - the recording exists and its raw row is committed
        log.failure("call {call_id}: situation report {path} for order {code} not taken", call_id=session.call_id,
                    path=report.audio_path, code=call.order_code)
        outcome = FeedbackOutcome(False, "", call.order_code)
    log.info("call {call_id} ({script}): order {code} spoken situation report {s:.1f} s accepted={ok}",
             call_id=session.call_id, script=call.script, code=call.order_code, s=rec.seconds, ok=outcome.accepted)
    if session.hung_up or rec.ended == "hangup":
        return "recorded" if outcome.accepted else "refused"
    await session.stream_file(sound("recorded" if outcome.accepted else "not_recorded"))
    if outcome.accepted:
        await session.stream_file(sound("status_situation"))
    await _goodbye(session)
    return "recorded" if outcome.accepted else "refused"


async def _no_answer(session, call: AnswerCall, journal, note: str) -> str:
    await journal.no_answer(_entry(session, call, "", "parsed", f"no answer: {note}"))
    log.info("call {call_id} ({script}): order {code}: {note}", call_id=session.call_id,
             script=call.script, code=call.order_code, note=note)
    await session.stream_file(sound("no_input_goodbye"))
    await session.hangup()
    return "no_answer"


async def _goodbye(session):
    await session.stream_file(sound("goodbye"))
    await session.hangup()


def _entry(session, call: AnswerCall, digits: str, state: str, note: str | None) -> KeypadEntry:
    return KeypadEntry(call_id=session.call_id, caller=call.caller, digits=digits, script=call.script,
                       state=state, order_code=call.order_code, note=note, delivery_id=call.delivery_id,
                       meta={"identified_by": call.identified_by} if call.identified_by else {})
