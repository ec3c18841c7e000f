"""Attaching caller history to a call's events, off the call's path.

The first time a call's record is committed, its caller's history is looked up in a unit of
work of its own.  The call's events wait for it, in order, at most `history_wait_s`; past that
they go out without it (``caller_history: null``) and the later events of the call carry it.
The record's writes never wait: nothing here is between Asterisk and the queue, or between the
tracker and the database.
"""
from __future__ import annotations

from datetime import datetime, timezone

from twisted.logger import Logger

from gateway import metrics
from gateway.hotline import callers

log = Logger()


class CallerHistory:
    def __init__(self, clock, db, cfg: callers.HotlineSection, idle_check):
        self.clock, self.db, self.cfg, self._idle_check = clock, db, cfg, idle_check
        self._known: dict[str, dict | None] = {}     # call_id -> history (None: lookup failed or late)
        self._queued: dict[str, list] = {}           # call_id -> [(snap, kinds)] waiting for it
        self._timers: dict[str, object] = {}
        self.lookups = 0

    @property
    def waiting(self) -> bool:
        return bool(self._queued)

    def when_known(self, snap, kinds: list, publish) -> None:
        cid = snap.call_id
        if cid in self._known:
            self._deliver(cid, snap, kinds, publish)
        else:
            first = cid not in self._queued
            self._queued.setdefault(cid, []).append((snap, kinds, publish))
            if first:
                self._look_up(snap)

    def _deliver(self, cid, snap, kinds, publish) -> None:
        publish(snap, kinds, self._known[cid])
        if snap.outcome is not None:          # the call is over: forget it
            self._known.pop(cid, None)

    def _look_up(self, snap) -> None:
        cid = snap.call_id
        self.lookups += 1
        at = datetime.fromtimestamp(snap.arrived_at or self.clock.seconds(), timezone.utc)
        d = self.db.run(callers.history_tx, snap.caller, at, self.cfg, cid, True)
        self._timers[cid] = self.clock.callLater(self.cfg.history_wait_s, self._settle, cid, None, "late")
        d.addCallbacks(lambda h: self._settle(cid, h, None),
                       lambda f: self._settle(cid, None, f.getErrorMessage()))

    def _settle(self, cid: str, history, problem) -> None:
        timer = self._timers.pop(cid, None)
        if timer is not None and timer.active():
            timer.cancel()
        if problem and cid in self._queued:
            metrics.CALLER_HISTORY_LATE.inc()
        if problem == "late":
            log.warn("hotline call {cid}: caller history not ready after {s:g} s; events go on without it",
                     cid=cid, s=self.cfg.history_wait_s)
        elif problem:
            log.error("hotline call {cid}: caller history lookup failed: {err}", cid=cid, err=problem)
        if cid in self._queued:                   # the first answer (or the deadline) releases the events
            self._known[cid] = history
        elif history is not None and cid in self._known:    # late, but the call is still going on
            self._known[cid] = history
        for snap, kinds, publish in self._queued.pop(cid, []):
            self._deliver(cid, snap, kinds, publish)
        self._idle_check()
