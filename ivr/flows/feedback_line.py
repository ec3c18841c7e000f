"""The feedback line (script `feedback`): a commander calls in and answers by keypad.

The calling number identifies member and team (through the feedback engine); with one open order
the answer applies to it, with several the caller keys the order code first (#-terminated).
An unknown or withheld number is told so, and the call is logged.  "Unknown": the engine raises
LookupError, or it finds no open order and the roster (OrderBook.known_phone) has no such number.

Caller ID is trusted, as nothing better comes over the PSTN, and every row says so
(`identified_by`: caller_id, or caller_id+pin).  A member with a PIN in the roster keys it first
(ivr/member_pins.py); two wrong tries end the call, refused and audited.  PIN digits are never
stored or logged.
"""
from __future__ import annotations

from twisted.logger import Logger

from ivr.agi.session import AgiSession
from ivr.callers import to_e164
from ivr.flows.answer_menu import ANSWER_KEYS, AnswerCall, MenuSettings, ask, take_answer
from ivr.journal import KeypadEntry
from ivr.prompts import sound

log = Logger()


class FeedbackLineFlow:
    script = "feedback"
    deadline = 600.0

    def __init__(self, reactor, sink, journal, *, orders=None, settings: MenuSettings = MenuSettings(),
                 code_timeout_ms: int = 8000, code_tries: int = 3, pins=None, pin_tries: int = 2):
        self.reactor = reactor
        self.sink = sink
        self.journal = journal
        self.orders = orders
        self.settings = settings
        self.code_timeout_ms = code_timeout_ms
        self.code_tries = code_tries
        self.pins = pins              # MemberPins (None: no member has a PIN, drills)
        self.pin_tries = pin_tries

    async def __call__(self, session: AgiSession) -> str:
        await session.answer()
        await session.stream_file(sound("feedback_welcome"))
        caller = to_e164(session.request.caller)
        codes = None
        if caller is not None:
            try:
                codes = await self.sink.open_orders_for(caller)
            except LookupError:
                codes = None       # the engine's way of saying "not on the roster"
        if codes == [] and not await self._on_roster(caller):
            codes = None           # the engine answers [] for a stranger too; the roster tells them apart
        if codes is None:
            return await self._refuse(session, caller, "unknown_caller",
                                      "feedback line: caller not on the roster or number withheld")
        identified_by = "caller_id"
        if self.pins is not None and await self.pins.required(caller):
            if not await self._pin_keyed(session, caller):
                return await self._refuse(session, caller, "pin_refused",
                                          f"feedback line: wrong PIN {self.pin_tries} times", "caller_id")
            identified_by = "caller_id+pin"
        if not codes:
            return await self._refuse(session, caller, "no_open_orders", "feedback line: no open orders",
                                      identified_by)
        if len(codes) == 1:
            code = codes[0]
        else:
            code = await self._ask_code(session, caller, codes, identified_by)
            if code is None:
                await self.journal.record(self._entry(session, caller, "", "parsed", None,
                                                      "feedback line: no valid order code keyed", identified_by))
                await session.stream_file(sound("no_input_goodbye"))
                await session.hangup()
                return "no_answer"
        brief = None
        if self.orders is not None:
            try:
                brief = await self.orders.brief(code)
            except Exception:  # noqa: BLE001 - the menu works without the brief
                log.failure("feedback line: cannot look up order {code}", code=code)
        call = AnswerCall(script=self.script, caller=caller, order_code=code,
                          offer_assembled=bool(brief and brief.leaving_city),
                          offer_situation=bool(brief and brief.major), identified_by=identified_by)

        async def play_order():
            played = await session.stream_file(sound("for_order"), ANSWER_KEYS)
            return played.digit or await session.say_digits(code, ANSWER_KEYS)

        return await take_answer(session, call, sink=self.sink, journal=self.journal,
                                 reactor=self.reactor, play_order=play_order, settings=self.settings)

    async def _on_roster(self, caller: str) -> bool:
        known = getattr(self.orders, "known_phone", None)
        if known is None:
            return True
        try:
            return bool(await known(caller))
        except Exception:  # noqa: BLE001 - if in doubt, do not call a commander a stranger
            log.failure("feedback line: roster lookup failed for {caller}", caller=caller)
            return True

    async def _pin_keyed(self, session, caller: str) -> bool:
        for attempt in range(1, self.pin_tries + 1):
            got = await ask(session, sound("enter_pin"), self.code_timeout_ms, 4)
            if got.digits and await self.pins.matches(caller, got.digits):
                return True
            log.info("feedback line call {call_id} from {caller}: PIN try {n} wrong", call_id=session.call_id,
                     caller=caller, n=attempt)
            if attempt < self.pin_tries:
                await session.stream_file(sound("wrong_pin"))
        await self.pins.refusals.refused(
            "feedback_pin", f"keypad:{caller}", f"feedback line {caller}",
            {"call_id": session.call_id, "tries": self.pin_tries, "identified_by": "caller_id"})
        return False

    async def _ask_code(self, session, caller, codes: list[str], identified_by: str) -> str | None:
        for _ in range(self.code_tries):
            got = await ask(session, sound("enter_order_code"), self.code_timeout_ms, 8)
            keyed = got.digits
            if not keyed:
                continue
            match = next((c for c in codes if c == keyed), None)
            if match is None:      # "427" for "0427": people drop leading zeros
                match = next((c for c in codes if c.lstrip("0") == keyed.lstrip("0") and keyed.lstrip("0")), None)
            await self.journal.record(self._entry(session, caller, keyed, "parsed" if match else "refused",
                                                  match, "order code keyed" if match else "unknown order code",
                                                  identified_by))
            if match:
                return match
            await session.stream_file(sound("wrong_order_code"))
        return None

    async def _refuse(self, session, caller, prompt: str, note: str, identified_by: str = "") -> str:
        log.info("feedback line call {call_id} from {caller}: {note}", call_id=session.call_id,
                 caller=caller or "withheld", note=note)
        await self.journal.record(self._entry(session, caller, "", "refused", None, note, identified_by))
        await session.stream_file(sound(prompt))
        await session.stream_file(sound("goodbye"))
        await session.hangup()
        return prompt

    def _entry(self, session, caller, digits, state, code, note, identified_by="") -> KeypadEntry:
        meta = {"agi_callerid": session.request.env.get("agi_callerid", "")[:40]}
        if identified_by:
            meta["identified_by"] = identified_by
        return KeypadEntry(call_id=session.call_id, caller=caller, digits=digits, script=self.script,
                           state=state, order_code=code, note=note, meta=meta)
