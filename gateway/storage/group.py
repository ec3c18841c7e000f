"""Group commit: units of work that arrive while one transaction is in flight run together in the
next one, each told only after that COMMIT ("durable before acknowledged" still holds for each).

A burst (hundreds of keypresses in a few seconds) then costs one commit per batch instead of one
per unit, and leaves the database pool's other threads to the rest of the gateway.  If a batch
fails, its units are run again one by one, so one bad unit cannot sink the others.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger

log = Logger()


class GroupCommit:
    def __init__(self, db, name: str, max_batch: int = 100):
        self.db = db
        self.name = name                # what the log names when a batch fails
        self.max_batch = max_batch
        self._queue: list[tuple[Callable, tuple, defer.Deferred]] = []
        self._busy = False

    def run(self, fn: Callable[..., Any], *args) -> defer.Deferred:
        """Like Database.run(fn, *args), in the next batch: fires after its COMMIT."""
        d = defer.Deferred()
        self._queue.append((fn, args, d))
        if not self._busy:
            self._next()
        return d

    def _next(self, _=None):
        if not self._queue:
            self._busy = False
            return
        self._busy = True
        batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]

        def done(results):
            for (_fn, _args, d), r in zip(batch, results):
                d.callback(r)

        def failed(f):
            log.warn("{name}: a batch of {n} failed ({e}); each alone", name=self.name, n=len(batch),
                     e=f.getErrorMessage())
            for fn, args, d in batch:
                self.db.run(fn, *args).chainDeferred(d)
        self.db.run(run_units, [(fn, args) for fn, args, _d in batch]).addCallbacks(done, failed).addBoth(self._next)


def run_units(conn, units):
    """Each unit (fn, args) in order; a run of units whose function has a `many(conn, [args])`
    (the same work for several at once, in few statements) goes to it together.  Also for a
    transaction of another owner that writes such units first (the feedback engine writes the
    keypad journal's raw rows in the transaction that judges them)."""
    out, i = [], 0
    while i < len(units):
        fn, args = units[i]
        many = getattr(fn, "many", None)
        if many is None:
            out.append(fn(conn, *args))
            i += 1
            continue
        j = i
        while j < len(units) and units[j][0] is fn:
            j += 1
        out += many(conn, [a for _fn, a in units[i:j]])
        i = j
    return out
