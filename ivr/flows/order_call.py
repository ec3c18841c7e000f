"""The order call (script `order`): a commander we called hears the order and answers by keypad.

Asterisk runs it from `gateway-out,order` after the OrderCaller's Originate was answered.  The
order code comes as the channel variable ORDER_CODE (the `order=` query, then AGI's first
argument, are the fallbacks), the number we dialled as YIHU_PHONE, our deliveries row as
YIHU_DELIVERY, and the call's one-time token as YIHU_TOKEN (ivr/tokens.py).  With a token gate
(the gateway always has one) a session whose token is missing, forged, expired or used is told
"not recorded" and hung up on, before the order is read: nothing is recorded for any team.
"""
from __future__ import annotations

import re

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

from ivr.agi.errors import AgiConnectionLost, AgiDeadChannel, ChannelHungUp
from ivr.agi.session import AgiSession
from ivr.flows.answer_menu import ANSWER_KEYS, AnswerCall, MenuSettings, take_answer
from ivr.journal import KeypadEntry
from ivr.prompts import sound
from ivr.tokens import TOKEN_VARIABLE

log = Logger()

ORDER_CODE = re.compile(r"^[0-9A-Za-z]{1,8}$")


class OrderCallFlow:
    script = "order"
    deadline = 600.0        # a call that outlives this is stuck, not thorough

    def __init__(self, reactor, sink, journal, *, orders=None, speech=None,
                 settings: MenuSettings = MenuSettings(), tokens=None):
        self.reactor = reactor
        self.sink = sink              # IKeypadSink
        self.journal = journal
        self.orders = orders          # OrderBook-like: brief(code) -> Deferred[OrderBrief | None]
        self.speech = speech          # OrderSpeech-like: render(text) -> Deferred[str | None]
        self.settings = settings
        self.tokens = tokens          # CallTokenGate; None only in menu tests and in-memory drills

    async def __call__(self, session: AgiSession) -> str:
        await session.answer()
        code = (await session.get_variable("ORDER_CODE") or session.request.params.get("order")
                or session.request.env.get("agi_arg_1", ""))
        if not ORDER_CODE.match(code or ""):
            log.warn("order call {call_id}: no usable order code ({code!r}); hanging up",
                     call_id=session.call_id, code=(code or "")[:20])
            await session.stream_file(sound("system_error"))
            await session.hangup()
            return "error"
        phone = await session.get_variable("YIHU_PHONE")
        delivery = await session.get_variable("YIHU_DELIVERY")
        # The order is read (read-only) while the token's first use commits, not after it: the
        # caller waits for one database round, not two.  A refused call never hears it.
        reading = ensureDeferred(self._brief(code))
        if self.tokens is not None and not await self._admitted(session, code, phone, delivery):
            await session.stream_file(sound("not_recorded"))
            await session.hangup()
            return "refused"
        call = AnswerCall(script=self.script, caller=phone or None, order_code=code,
                          delivery_id=int(delivery) if delivery and delivery.isdigit() else None,
                          identified_by="order_call_token" if self.tokens is not None else "")
        brief = await reading
        call.offer_assembled = bool(brief and brief.leaving_city)
        call.offer_situation = bool(brief and brief.major)
        spoken = await self._speech(brief.text) if brief else None

        async def play_order():
            played = await session.stream_file(sound("order_intro"), ANSWER_KEYS)
            if played.digit:
                return played.digit
            digit = await session.say_digits(code, ANSWER_KEYS)
            if digit or not spoken:
                return digit
            return (await session.stream_file(spoken, ANSWER_KEYS)).digit

        try:
            return await take_answer(session, call, sink=self.sink, journal=self.journal,
                                     reactor=self.reactor, play_order=play_order,
                                     settings=self.settings, speech=self.speech)
        except (ChannelHungUp, AgiDeadChannel, AgiConnectionLost):
            if not call.keyed:
                await self.journal.no_answer(KeypadEntry(
                    call_id=session.call_id, caller=call.caller, digits="", script=self.script,
                    state="parsed", order_code=code, delivery_id=call.delivery_id,
                    note="no answer: hung up before keying an answer"))
                log.info("order call {call_id}: order {code}: hung up before answering",
                         call_id=session.call_id, code=code)
            raise

    async def _admitted(self, session: AgiSession, code: str, phone, delivery) -> bool:
        token = await session.get_variable(TOKEN_VARIABLE)
        peer = getattr(session.protocol.transport, "getPeer", lambda: None)()
        return await self.tokens.admit(call_id=session.call_id, order_code=code, token=token,
                                       delivery=delivery, phone=phone, peer=getattr(peer, "host", ""))

    async def _brief(self, code: str):
        if self.orders is None:
            return None
        try:
            return await self.orders.brief(code)
        except Exception:  # noqa: BLE001 - the order is still read by its code
            log.failure("order call: cannot look up order {code}", code=code)
            return None

    async def _speech(self, text: str):
        if self.speech is None:
            return None
        try:
            d = self.speech.render(text)
            return await d if isinstance(d, Deferred) else d
        except Exception:  # noqa: BLE001 - speech is optional
            log.failure("order call: order text not rendered")
            return None
