"""The hotline service: AMI events -> tracker -> database -> events for the adapter layer.

A call's record and its events (``hotline.arrived`` / ``answered`` / ``abandoned`` / ``ended``)
are committed in one transaction (the event log).  Writes for one call are serialised and
coalesced (the newest state wins, the events queue up in order); a failed write is retried with
backoff, forever, and its events with it.  The caller's history follows as its own event
(``hotline.caller_history``, gateway/hotline/history.py), so the call's record never waits for it.
"""
from __future__ import annotations

from datetime import datetime, timezone

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from gateway import metrics
from gateway.eventlog import record_events
from gateway.hotline import store
from gateway.hotline.config import HotlineSection
from gateway.hotline.history import CallerHistory
from gateway.service import Part
from gateway.hotline.tracker import DEFAULT_CONTEXTS, DEFAULT_LINES, HotlineCall, HotlineTracker

log = Logger()
EVENT_KINDS = ("arrived", "answered", "abandoned", "ended")


def _iso(epoch):
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def call_payload(call: HotlineCall) -> dict:
    """What an event says about a call (times as ISO 8601 UTC)."""
    return {"call_id": call.call_id, "line": call.line, "caller": call.caller,
            "channel": call.channel, "uniqueid": call.uniqueid,
            "arrived_at": _iso(call.arrived_at), "ivr_at": _iso(call.ivr_at),
            "queue_joined_at": _iso(call.queue_joined_at), "queue": call.queue,
            "answered_at": _iso(call.answered_at), "call_taker": call.call_taker,
            "hold_seconds": call.hold_seconds, "ended_at": _iso(call.ended_at),
            "hangup_cause": call.hangup_cause, "hangup_text": call.hangup_text,
            "outcome": call.outcome, "note": call.note}


def write_call_tx(conn, call: HotlineCall, kinds: list, at: datetime) -> int:
    """The call's record and the events it owes, one transaction."""
    row_id = store.upsert_call(conn, call, at)
    record_events(conn, [(f"hotline.{k}", call_payload(call)) for k in kinds], at)
    return row_id


class HotlineService(Part, service.Service):
    """Wire with ``HotlineService(reactor, db, link=ami_link)``; start it before the link
    (``startService`` loads the calls left open by a previous run, so that the link's first
    resync can close them)."""

    name = "hotline"

    def __init__(self, reactor, db, link=None, *, lines=DEFAULT_LINES,
                 contexts=DEFAULT_CONTEXTS, clock=None, retry_max: float = 30.0, callers=None,
                 restore_at_start: bool = True):
        self.reactor = reactor
        self.clock = clock or reactor
        self.db = db
        self.retry_max = retry_max
        self.restore_at_start = restore_at_start     # False: the lease holder restores (gateway/hotline/feed.py)
        self._tracker_args = dict(lines=lines, contexts=contexts, clock=self.clock.seconds)
        self.tracker = HotlineTracker(self._changed, **self._tracker_args)
        self._dirty: dict[str, list] = {}      # call_id -> [latest snapshot, [event kinds]]
        self._writing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._idle_waiters: list[defer.Deferred] = []
        self.writes = 0
        # Caller history: its own event (hotline.caller_history), looked up after the record's COMMIT.
        self.history = CallerHistory(self.clock, db, callers or HotlineSection(), self._check_idle)
        if link is not None:
            link.add_event_listener(self.tracker.handle)
            link.add_resync_listener(self.tracker)

    # --- lifecycle ----------------------------------------------------------------------------
    def startService(self):
        super().startService()
        self._track_start(defer.maybeDeferred(self.restore) if self.restore_at_start else defer.succeed(None))

    def forget(self) -> None:
        """This node no longer follows the calls (the lease of the AMI events moved): drop what the
        tracker knew; the writes already queued still commit.  The next holder restores from the
        database and resyncs."""
        for c in self.tracker.active():
            metrics.HOTLINE_ACTIVE.labels(c.line).dec()
        self.tracker = HotlineTracker(self._changed, **self._tracker_args)

    @defer.inlineCallbacks
    def restore(self):
        calls = yield self.db.run(store.open_calls)
        self.tracker.restore(calls)
        for c in calls:
            metrics.HOTLINE_ACTIVE.labels(c.line).inc()
        if calls:
            log.info("hotline: {n} call(s) open from before; the next AMI resync checks them",
                     n=len(calls))
        return calls

    # --- tracker changes ------------------------------------------------------------------------
    def _changed(self, call: HotlineCall, kinds: tuple) -> None:
        for k in kinds:
            if k == "arrived":
                metrics.HOTLINE_ACTIVE.labels(call.line).inc()
            elif k == "answered" and call.answered_at is not None:
                metrics.HOTLINE_ANSWER_SECONDS.labels(call.line).observe(
                    max(0.0, call.answered_at - call.arrived_at))
            elif k == "ended":
                metrics.HOTLINE_ACTIVE.labels(call.line).dec()
                metrics.HOTLINE_CALLS.labels(call.line, call.outcome or "unknown").inc()
        entry = self._dirty.get(call.call_id)
        if entry is None:
            entry = self._dirty[call.call_id] = [None, []]
        entry[0] = call.copy()
        entry[1].extend(k for k in kinds if k in EVENT_KINDS)
        if call.call_id not in self._writing:
            self._write(call.call_id)

    def _write(self, call_id: str) -> None:
        snap, kinds = self._dirty.pop(call_id)
        self._writing.add(call_id)
        d = self.db.run(write_call_tx, snap, kinds, datetime.fromtimestamp(self.clock.seconds(), timezone.utc))
        d.addCallbacks(self._written, self._write_failed, callbackArgs=(snap, kinds),
                       errbackArgs=(snap, kinds))

    def _written(self, _id, snap: HotlineCall, kinds: list) -> None:
        self.writes += 1
        self._failures.pop(snap.call_id, None)
        if "arrived" in kinds:
            self.history.look_up(snap)        # after the COMMIT, in its own transaction: never in the way
        self._next(snap.call_id)

    def _write_failed(self, f, snap: HotlineCall, kinds: list) -> None:
        n = self._failures[snap.call_id] = self._failures.get(snap.call_id, 0) + 1
        delay = min(self.retry_max, 0.5 * 2 ** min(n - 1, 10))
        log.error("hotline: writing call {cid} failed ({n}x): {err}; retrying in {d:g} s",
                  cid=snap.call_id, n=n, err=f.getErrorMessage(), d=delay)
        newer = self._dirty.get(snap.call_id)
        if newer is None:
            self._dirty[snap.call_id] = [snap, kinds]
        else:
            newer[1][:0] = kinds          # the failed write's events come first
        # The call keeps its slot in _writing until the retry, so nothing overtakes it.
        self.clock.callLater(delay, self._next, snap.call_id)

    def _next(self, call_id: str) -> None:
        self._writing.discard(call_id)
        if call_id in self._dirty:
            self._write(call_id)
        else:
            self._check_idle()

    def _check_idle(self) -> None:
        if not self._writing and not self._dirty and not self.history.waiting and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    def flushed(self) -> defer.Deferred:
        """Fires once every change so far is committed (with its events)."""
        d = defer.Deferred()
        self._idle_waiters.append(d)
        self._check_idle()
        return d
