"""Caller history for a call, written as its own event, off the call's path.

When a call's first record (``hotline.arrived``) is committed, its caller's history is looked up
in a transaction of its own, which also marks the call's row with the flag and records the event
``hotline.caller_history`` (call_id, line, caller, caller_history).  The call's record and its
events are never held for it: nothing here is between Asterisk and the queue, or between the
tracker and the database.  A failed lookup is logged and counted; the call goes on as any other.
"""
from __future__ import annotations

from datetime import datetime, timezone

from twisted.logger import Logger

from gateway import metrics
from gateway.eventlog import record_event
from gateway.hotline import callers

log = Logger()
KIND = "hotline.caller_history"


def caller_history_tx(conn, call_id: str, line: str, caller: str | None, arrived: datetime, at: datetime,
                      cfg: callers.HotlineSection) -> dict:
    """The history, the flag on the call's row and the event, one transaction."""
    history = callers.history_tx(conn, caller, arrived, cfg, call_id, True)
    record_event(conn, KIND, {"call_id": call_id, "line": line, "caller": caller, "caller_history": history}, at)
    return history


class CallerHistory:
    def __init__(self, clock, db, cfg: callers.HotlineSection, idle_check):
        self.clock, self.db, self.cfg, self._idle_check = clock, db, cfg, idle_check
        self._pending: set[str] = set()
        self.lookups = 0

    @property
    def waiting(self) -> bool:
        return bool(self._pending)

    def look_up(self, snap) -> None:
        cid = snap.call_id
        self.lookups += 1
        self._pending.add(cid)
        now = self.clock.seconds()
        arrived = datetime.fromtimestamp(snap.arrived_at or now, timezone.utc)
        d = self.db.run(caller_history_tx, cid, snap.line, snap.caller, arrived,
                        datetime.fromtimestamp(now, timezone.utc), self.cfg)
        d.addErrback(self._failed, cid)
        d.addBoth(self._done, cid)

    def _failed(self, f, cid: str) -> None:
        metrics.CALLER_HISTORY_FAILED.inc()
        log.error("hotline call {cid}: caller history lookup failed: {err}; the call goes on without it",
                  cid=cid, err=f.getErrorMessage())

    def _done(self, _result, cid: str) -> None:
        self._pending.discard(cid)
        self._idle_check()
