"""Drill mode: an in-memory feedback engine, so the IVR can be exercised end to end (with the
emulator or a real Asterisk) without the order engine.  Never used for real orders."""
from __future__ import annotations

from twisted.internet.defer import fail, succeed
from zope.interface import implementer

from gateway.interfaces import FeedbackOutcome, IKeypadSink, KeypadAnswer
from ivr.prompts import STATUS_BY_DIGIT


@implementer(IKeypadSink)
class DrillKeypadSink:
    def __init__(self, open_orders: dict[str, list[str]] | None = None, *, leaving_city: set[str] = frozenset()):
        self.open_orders = dict(open_orders or {})     # caller E.164 -> open order codes
        self.leaving_city = set(leaving_city)          # codes whose teams may answer 4
        self.answers: list[KeypadAnswer] = []

    def keypad_answer(self, answer: KeypadAnswer):
        self.answers.append(answer)
        status = STATUS_BY_DIGIT.get(answer.digit)
        if status is None or (status == "assembled" and answer.order_code not in self.leaving_city):
            return succeed(FeedbackOutcome(False, f"按键 {answer.digit} 不适用于指令 {answer.order_code}",
                                           answer.order_code))
        return succeed(FeedbackOutcome(True, f"已记录 {answer.order_code} {status}", answer.order_code, status))

    def open_orders_for(self, caller: str):
        if caller not in self.open_orders:
            return fail(LookupError(caller))
        return succeed(list(self.open_orders[caller]))
