"""The live end of the event log, for the event stream and the webhooks.

Events are rows of the database's event log (gateway/eventlog.py), committed with the state
change they report.  The tail reads the log after every commit that recorded events (the
Database wakes it), and every `poll_s` for events other processes committed (the CLI, other
nodes).  It moves only over final ids (the visibility rule in gateway/eventlog.py), so its
subscribers get every event once, in id order, even when PostgreSQL commits ids out of order.
It keeps the most recent events in memory; a reader further behind reads the log itself.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from gateway import eventlog
from gateway.eventlog import Event
from gateway.metrics import EVENTS_HEAD, EVENTS_HELD_SECONDS, EVENTS_SWEPT
from gateway.service import Part

log = Logger()

__all__ = ["Event", "EventTail", "EventsSection", "EventsService", "RetentionSweep"]


@dataclass(frozen=True)
class EventsSection:
    retention_days: float = 30.0          # events older than this are deleted from the log
    sweep_interval_s: float = 3600.0      # how often the retention sweep runs
    poll_s: float = 1.0                   # look for events committed by other processes (CLI, other nodes)
    keep_in_memory: int = 10000           # recent events served without reading the database

    def __post_init__(self):
        if self.retention_days <= 0:
            raise ValueError("retention_days must be positive")
        if self.poll_s <= 0 or self.sweep_interval_s <= 0:
            raise ValueError("poll_s and sweep_interval_s must be positive")
        if self.keep_in_memory < 100:
            raise ValueError("keep_in_memory must be at least 100")


class EventTail:
    """`head`: every id up to it is final and was handed to the subscribers.  `floor`: every
    final event with floor < id <= head is in memory."""

    BATCH = 500
    HELD_RETRY_S = 0.02

    def __init__(self, clock, db, cfg: EventsSection = EventsSection()):
        self.clock, self.db, self.cfg = clock, db, cfg
        self.head = self.floor = 0
        self.started = False
        self._ready_waiters: list[defer.Deferred] = []
        self._recent: list[Event] = []
        self._subscribers: list[Callable[[Event], None]] = []
        self._reading = self._again = False
        self._retry = None
        self._poll = task.LoopingCall(self.wake)
        self._poll.clock = clock
        self._running = False
        self._horizon = eventlog.Horizon()

    # --- lifecycle ------------------------------------------------------------------------------
    @defer.inlineCallbacks
    def start(self):
        self._running = True
        while self._running:          # live from the first horizon: every id up to it is final
            try:
                batch = yield self.db.run(eventlog.read_final, None, self._horizon, self.clock.seconds())
            except Exception as e:  # noqa: BLE001 - the database may come up after the gateway
                log.error("event log: cannot read it ({err}); trying again in {s:g} s", err=e, s=self.cfg.poll_s)
                yield task.deferLater(self.clock, self.cfg.poll_s, lambda: None)
                continue
            self._horizon = batch.horizon
            if batch.horizon.final is not None:
                break
            self._note_held(batch.held_since)
            yield task.deferLater(self.clock, self.HELD_RETRY_S, lambda: None)
        if not self._running:
            return None
        self.head = self.floor = self._horizon.final or 0
        EVENTS_HEAD.set(self.head)
        self.db.add_event_listener(lambda _events: self.wake())
        self._poll.start(self.cfg.poll_s, now=False)
        log.info("event log: live from event #{head}", head=self.head)
        self.started = True
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(self.head)
        return self.head

    def when_ready(self) -> defer.Deferred:
        """Fires (with the head) once the tail knows where the log ends."""
        if self.started:
            return defer.succeed(self.head)
        d = defer.Deferred()
        self._ready_waiters.append(d)
        return d

    def stop(self):
        self._running = False
        if self._poll.running:
            self._poll.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()

    # --- following the log ------------------------------------------------------------------------
    def wake(self) -> None:
        if not self._running:
            return
        if self._reading:
            self._again = True
            return
        self._reading, self._again = True, False
        self.db.run(eventlog.read_final, self.head, self._horizon, self.clock.seconds(), self.BATCH).addCallbacks(
            self._got, self._failed)

    def _got(self, batch: eventlog.Batch) -> None:
        self._reading = False
        self._horizon = batch.horizon
        fresh = [e for e in batch.events if e.id > self.head]
        for e in fresh:
            self._keep(e)
        if len(batch.events) < self.BATCH and (batch.horizon.final or 0) > self.head:
            self.head = batch.horizon.final           # the ids in between never committed
        # Told after the whole batch is kept, so that a reader woken by the first sees them all.
        for e in fresh:
            self._tell(e)
        self._note_held(batch.held_since)
        if batch.held and (self._retry is None or not self._retry.active()):
            self._retry = self.clock.callLater(self.HELD_RETRY_S, self.wake)
        if self._again or len(batch.events) == self.BATCH:
            self.wake()

    def _note_held(self, since: float | None) -> None:
        EVENTS_HELD_SECONDS.set(0 if since is None else self.clock.seconds() - since)

    def _failed(self, f) -> None:
        self._reading = False
        log.error("event log: reading after #{head} failed ({err}); the next poll tries again",
                  head=self.head, err=f.getErrorMessage())

    def _keep(self, e: Event) -> None:
        self.head = e.id
        EVENTS_HEAD.set(e.id)
        self._recent.append(e)
        if len(self._recent) > 2 * self.cfg.keep_in_memory:
            cut = len(self._recent) - self.cfg.keep_in_memory
            self.floor = self._recent[cut - 1].id
            del self._recent[:cut]

    def _tell(self, e: Event) -> None:
        for fn in list(self._subscribers):
            try:
                fn(e)
            except Exception:  # noqa: BLE001 - one bad subscriber must not stop the others
                log.failure("event subscriber failed on {kind} #{id}", kind=e.kind, id=e.id)

    # --- for readers ------------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """fn(event) for every new final event, in id order."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def in_memory(self, cursor: int) -> bool:
        return cursor >= self.floor

    def since(self, cursor: int) -> list[Event]:
        """The events after `cursor` (which must be in memory)."""
        return self._recent[bisect.bisect_right(self._recent, cursor, key=lambda e: e.id):]

    def read(self, cursor: int, limit: int = BATCH):
        """Deferred[(events after cursor, up to `limit`, in id order; the id read up to)].
        From memory when the cursor is recent, else from the log (final ids only)."""
        if self.in_memory(cursor):
            events = self.since(cursor)
            return defer.succeed((events[:limit], events[limit - 1].id if len(events) > limit else self.head))
        upto = self.head

        def got(events):
            return events, (events[-1].id if len(events) == limit else upto)
        return self.db.run(eventlog.read_range, cursor, upto, limit).addCallback(got)

    def behind(self, cursor: int) -> int | None:
        """Events after `cursor`, when the tail can tell without the database."""
        return len(self.since(cursor)) if self.in_memory(cursor) else None


class RetentionSweep:
    """Deletes events older than the retention, every `sweep_interval_s` on the injected clock."""

    def __init__(self, clock, db, cfg: EventsSection = EventsSection()):
        self.clock, self.db, self.cfg = clock, db, cfg
        self._loop = task.LoopingCall(self.sweep)
        self._loop.clock = clock

    def start(self):
        self._loop.start(self.cfg.sweep_interval_s, now=True)

    def stop(self):
        if self._loop.running:
            self._loop.stop()

    def sweep(self):
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

        def swept(n):
            EVENTS_SWEPT.inc(n)
            if n:
                log.info("event log: {n} event(s) older than {days:g} days deleted", n=n, days=self.cfg.retention_days)
            return n

        def failed(f):
            log.error("event log: retention sweep failed ({err}); next sweep tries again", err=f.getErrorMessage())
        return self.db.run(eventlog.sweep_tx, now, timedelta(days=self.cfg.retention_days)).addCallbacks(swept, failed)


class EventsService(Part, service.Service):
    """The tail, the retention sweep and the webhooks, started after the database; up (Part)
    once the tail knows where the log ends."""
    name = "events"

    def __init__(self, tail: EventTail, sweep: RetentionSweep | None, webhooks=None):
        # sweep None: the retention sweep runs elsewhere (the gateway holds it by a lease)
        self.tail, self.sweep, self.webhooks = tail, sweep, webhooks

    def startService(self):
        super().startService()
        d = self.tail.start()
        # Each only if the service was not stopped while the tail started (a gateway that could
        # not start stops at once): a loop started after the stop would run on, on a closed pool.
        if self.sweep is not None:
            d.addCallback(lambda _: self.sweep.start() if self.running else None)
        if self.webhooks is not None:
            d.addCallback(lambda _: self.webhooks.start() if self.running else None)
        self._track_start(d)

    def stopService(self):
        super().stopService()
        if self.sweep is not None:
            self.sweep.stop()
        self.tail.stop()
        if self.webhooks is not None:
            return self.webhooks.stop()
        return None
