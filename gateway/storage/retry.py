"""Writes that must not be lost: retried until they commit, with a deadline that raises the alarm.

A state write whose failure would leave the database wrong (a segment's or a message's final
state, a call attempt's outcome) is not fire-and-forget: on a database fault (connection lost,
server gone, SQLite locked) it is tried again with backoff for as long as the process lives.
Past `alarm_after` seconds the alarm goes: one CRITICAL log line naming the write, and the
gauge yihu_db_writes_overdue{part} stays up until it commits.  Errors that are not faults of
the database (a bug, a constraint) fail at once: retrying would not help.
"""
from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from twisted.internet import defer
from twisted.logger import Logger

from gateway import metrics

log = Logger()


def is_transient(e: BaseException) -> bool:
    from gateway.storage.pool import DatabaseDeadline      # (rolled back: the same work again)
    if isinstance(e, (OperationalError, InterfaceError, DatabaseDeadline)):
        return True
    return isinstance(e, DBAPIError) and bool(getattr(e, "connection_invalidated", False))


def is_conflict(e: BaseException) -> bool:
    """PostgreSQL rolled the transaction back to break a deadlock (or a serialization conflict):
    the same unit of work, run again, normally commits."""
    return getattr(getattr(e, "orig", None), "sqlstate", None) in ("40P01", "40001")


def run_retrying_conflicts(db, fn, *args, attempts: int = 3) -> defer.Deferred:
    """db.run(fn, *args), run again (at most `attempts` in all) when PostgreSQL chose it as the
    victim of a deadlock: several nodes and the modem bank write the same rows in their own order."""
    def again(f, left):
        if left > 1 and is_conflict(f.value):
            log.warn("{what}: rolled back to break a deadlock; running it again", what=getattr(fn, "__name__", fn))
            return db.run(fn, *args).addErrback(again, left - 1)
        return f
    return db.run(fn, *args).addErrback(again, attempts)


def run_until_committed(db, clock, part: str, what: str, fn, *args, alarm_after: float = 30.0,
                        first_delay: float = 0.2, max_delay: float = 5.0) -> defer.Deferred:
    """db.run(fn, *args), again after each database fault; Deferred fires after the COMMIT."""
    result = defer.Deferred()
    started = clock.seconds()
    state = {"tries": 0, "alarmed": False}

    def attempt():
        try:
            d = db.run(fn, *args)
        except RuntimeError as e:        # the pool is stopped: the process is going away
            done(e)
            return
        d.addCallbacks(committed, failed)

    def committed(value):
        if state["alarmed"]:
            metrics.DB_WRITES_OVERDUE.labels(part).dec()
            log.warn("{part}: {what} committed after {t:.1f} s and {n} retries", part=part, what=what,
                     t=clock.seconds() - started, n=state["tries"])
        result.callback(value)

    def done(e):
        if state["alarmed"]:
            metrics.DB_WRITES_OVERDUE.labels(part).dec()
        result.errback(e)

    def failed(f):
        if not is_transient(f.value):
            done(f)
            return
        state["tries"] += 1
        metrics.DB_WRITE_RETRIES.labels(part).inc()
        waited = clock.seconds() - started
        if waited >= alarm_after and not state["alarmed"]:
            state["alarmed"] = True
            metrics.DB_WRITES_OVERDUE.labels(part).inc()
            log.critical("{part}: {what} NOT committed after {t:.0f} s ({e}); still retrying", part=part,
                         what=what, t=waited, e=str(f.value).splitlines()[0][:200])
        delay = min(max_delay, first_delay * (2 ** min(state["tries"], 10)))
        clock.callLater(delay, attempt)

    attempt()
    return result
