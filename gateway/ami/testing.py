"""Helpers for tests and drills that run the real AMI client against the emulator."""
from __future__ import annotations

from twisted.internet import defer, task
from zope.interface import implementer

from gateway.interfaces import IEventSink


@implementer(IEventSink)
class CollectingSink:
    """An IEventSink that keeps what it is given; ``check(kind, payload)`` may assert things at
    publish time (e.g. that the record is already committed)."""

    def __init__(self, check=None):
        self.events: list[tuple[str, dict]] = []
        self.check = check
        self.errors: list[BaseException] = []

    def publish(self, kind: str, payload: dict):
        if self.check is not None:
            try:
                self.check(kind, payload)
            except BaseException as e:   # recorded, asserted by the test
                self.errors.append(e)
        self.events.append((kind, payload))

    def committed(self, events):
        """As a Database event listener: the events a commit recorded."""
        for e in events:
            self.publish(e.kind, e.payload)

    def kinds(self, call_id: str | None = None) -> list[str]:
        return [k for k, p in self.events if call_id is None or p.get("call_id") == call_id]


@defer.inlineCallbacks
def wait_for(reactor, predicate, timeout: float = 10.0, interval: float = 0.02, what: str = ""):
    """Poll ``predicate()`` until it is true; fail after ``timeout`` seconds."""
    waited = 0.0
    while True:
        v = predicate()
        if v:
            return v
        if waited >= timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        yield task.deferLater(reactor, interval, lambda: None)
        waited += interval


def sleep(reactor, seconds: float):
    return task.deferLater(reactor, seconds, lambda: None)
