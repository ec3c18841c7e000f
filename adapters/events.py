"""The event bus: where the parts publish what happens (a hotline call arrives, a team answers,
an escalation fires) and where the adapters (webhooks, the event stream) pick it up.

Events are numbered; the bus keeps the most recent ones so that a client of the event stream
that reconnects can resume from the last number it saw.  The database stays the record: an
event is published only after what it describes was committed.
"""
from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from twisted.logger import Logger
from zope.interface import implementer

from gateway.interfaces import IEventSink
from gateway.mode import mark_drill

log = Logger()


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str
    at: str               # ISO 8601 UTC
    payload: dict

    def as_dict(self) -> dict:
        return {"seq": self.seq, "kind": self.kind, "at": self.at, "payload": self.payload}


@implementer(IEventSink)
class EventBus:
    def __init__(self, clock, keep: int = 2000, node: str = "", drill: bool = False,
                 drill_order=lambda order_id: False):
        self.clock = clock
        self.node = node
        self.drill = drill                # drill mode: every event says so (gateway/mode.py)
        self.drill_order = drill_order    # order id -> is it a drill order (DrillOrders.is_drill)
        self.recent: collections.deque[Event] = collections.deque(maxlen=keep)
        self._seq = itertools.count(1)
        self._subscribers: list[Callable[[Event], None]] = []

    def publish(self, kind: str, payload: dict) -> None:
        at = datetime.fromtimestamp(self.clock.seconds(), timezone.utc).isoformat(timespec="milliseconds")
        event = Event(next(self._seq), kind, at, self.label(payload))
        self.recent.append(event)
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # noqa: BLE001 - one bad subscriber must not stop the others
                log.failure("event subscriber failed on {kind} #{seq}", kind=kind, seq=event.seq)

    def label(self, payload: dict) -> dict:
        """The payload as every event carries it: with `"drill"` (drill mode, or a drill order).
        Whoever builds or stores an event (the database event log too) goes through here."""
        return mark_drill(payload, self.drill or self.drill_order(payload.get("order_id")))

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def since(self, seq: int) -> list[Event]:
        return [e for e in self.recent if e.seq > seq]

    @property
    def last_seq(self) -> int:
        return self.recent[-1].seq if self.recent else 0
