"""Wiring: the FastAGI factory with the four flows, ready for listenTCP."""
from __future__ import annotations

from ivr.agi.server import FastAgiFactory
from ivr.flows.answer_menu import MenuSettings
from ivr.flows.feedback_line import FeedbackLineFlow
from ivr.flows.hotline import HotlineFlow, OverflowFlow
from ivr.flows.order_call import OrderCallFlow

DEFAULT_PORT = 4573


def make_fastagi_factory(reactor, *, sink, journal, orders=None, speech=None,
                         settings: MenuSettings = MenuSettings(), hotline_greet: bool = True,
                         hotline_triage_ms: int = 3000, tokens=None, pins=None,
                         **factory_options) -> FastAgiFactory:
    """sink: IKeypadSink; journal: KeypadJournal (MemoryJournal in drills).
    tokens: CallTokenGate for order calls; pins: the feedback line's PinCheck; peers (a
    factory option): PeerGate.  The gateway passes all three (gateway/wiring.py)."""
    flows = {
        "order": OrderCallFlow(reactor, sink, journal, orders=orders, speech=speech, settings=settings,
                               tokens=tokens),
        "feedback": FeedbackLineFlow(reactor, sink, journal, orders=orders, settings=settings, pins=pins),
        "hotline": HotlineFlow(reactor, journal, greet=hotline_greet, triage_ms=hotline_triage_ms),
        "overflow": OverflowFlow(),
        # no call-taker logged in (dialplans/extensions.conf): nobody could answer, so the IVR
        # costs the caller no time; the dialplan bounds it with TIMEOUT(absolute)
        "nocalltaker": HotlineFlow(reactor, journal, greet=hotline_greet, triage_ms=hotline_triage_ms),
    }
    return FastAgiFactory(reactor, flows, **factory_options)


def listen(reactor, factory: FastAgiFactory, port: int = DEFAULT_PORT, interface: str = "127.0.0.1"):
    """Asterisk connects from the PBX host; bind to loopback unless it runs elsewhere."""
    return reactor.listenTCP(port, factory, interface=interface)
