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


# --- tests on an injected clock over real loopback TCP ---------------------------------------
# The bytes go through the real reactor (loopback sockets); every timer of the emulator, the
# link and the hotline service runs on a task.Clock that the test moves on.  No real-time wait:
# the reactor is only turned over until what is in flight has arrived.

class TestClock(task.Clock):
    """A task.Clock that knows what work it must not run ahead of: ``owed`` holds callables
    that say True while such work is in progress (a database thread busy); the clock stands
    still until it is done, as it would on a machine infinitely fast."""

    def __init__(self):
        super().__init__()
        self.owed: list = []

    def owes(self) -> bool:
        return any(busy() for busy in self.owed)


def test_clock(start: float = 1_796_012_600.0) -> TestClock:
    """A TestClock at a plausible epoch (AMI Timestamp headers and call times are epoch)."""
    clock = TestClock()
    clock.advance(start)
    return clock


def database_busy(db):
    """For TestClock.owed: the gateway Database's threads have work in hand or queued."""
    pool = db.pool
    return lambda: bool(pool.working) or pool.q.qsize() > 0


@defer.inlineCallbacks
def settle(reactor, turns: int = 6):
    """Turn the real reactor over a few times, so that bytes written on loopback (and results
    of the database threads) arrive; clock time does not move."""
    for _ in range(turns):
        yield task.deferLater(reactor, 0, lambda: None)


@defer.inlineCallbacks
def run_until(reactor, clock, predicate, limit: float = 30.0, step: float = 0.05, what: str = "",
              real_guard: float = 10.0):
    """Move ``clock`` on in steps of ``step`` seconds, letting the I/O settle before each, until
    ``predicate()`` is true (its value is returned).  Past ``limit`` seconds of clock time the
    clock stops; the predicate may still come true from work owed by threads or sockets (a
    database commit, a blocking client in a thread) for ``real_guard`` real seconds, then fails."""
    import time
    elapsed, started = 0.0, time.monotonic()
    owes = getattr(clock, "owes", lambda: False)
    while True:
        yield settle(reactor)
        v = predicate()
        if v:
            return v
        if owes() and time.monotonic() - started <= real_guard:
            yield task.deferLater(reactor, 0.001, lambda: None)     # the database is working
            continue
        if elapsed >= limit - 1e-9:
            if time.monotonic() - started > real_guard:
                raise AssertionError(f"not within {limit:g} s on the clock: {what or predicate}")
            yield task.deferLater(reactor, 0.005, lambda: None)
            continue
        clock.advance(step)
        elapsed += step


def run_for(reactor, clock, seconds: float, step: float = 0.05):
    """Let ``seconds`` of clock time pass, the I/O settling at each step."""
    end = clock.seconds() + seconds
    return run_until(reactor, clock, lambda: clock.seconds() >= end - 1e-9, seconds + step, step)


def run_deferred(reactor, clock, d: defer.Deferred, limit: float = 30.0, step: float = 0.05):
    """Drive the clock until ``d`` fires; a Deferred with d's result (or its failure)."""
    box: list = []
    d.addBoth(box.append)
    return run_until(reactor, clock, lambda: bool(box), limit, step,
                     what="the awaited Deferred").addCallback(lambda _: box[0])
