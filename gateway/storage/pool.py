"""SQLAlchemy from Twisted: every unit of work runs in a thread pool of its own.

After buildbot's db/pool.py: the reactor thread never touches the database, and neither does
the reactor's default thread pool (name resolution and other work must not queue behind a slow
disk).  SQLite gets exactly one thread: it serialises writers anyway, and one thread keeps
its locking simple.  A unit of work is a function taking a Connection inside a transaction;
when its Deferred fires, the transaction is committed ("durable before acknowledged").

Deadlines: every statement has one (PostgreSQL's statement_timeout, set on each connection;
on SQLite a progress handler interrupts a statement past it, and the busy timeout bounds lock
waits), and so has waiting for a database thread or a pooled connection.  A unit of work past a
deadline fails with DatabaseDeadline, logged naming the unit of work; a hung database then
holds no thread for ever, and the owners of durable work (SMS outbox, feedback, hotline writes,
fan-out sweep, escalation auditor) try again.
"""
from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import TimeoutError as SaTimeoutError
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from gateway import metrics
from gateway import eventlog  # (module: eventlog imports the schema, which imports this package)
from gateway.storage import bulk

T = TypeVar("T")
log = Logger()

try:
    from psycopg import Error as _DriverError
    from psycopg.pq import ExecStatus, TransactionStatus
    _IDLE, _PING_OK = TransactionStatus.IDLE, (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK)
except ImportError:         # no PostgreSQL driver: SQLite only
    _DriverError, _IDLE, _PING_OK = OSError, None, ()

DEFAULT_STATEMENT_TIMEOUT_S = 30.0
DEFAULT_POOL_TIMEOUT_S = 30.0


class DatabaseDeadline(TimeoutError):
    """A unit of work passed a deadline: its statement ran too long, or it waited too long for a
    database thread or connection.  str() names the unit of work."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind          # statement / pool


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
                pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S) -> Engine:
    """An engine with the settings Yihu relies on (durability, foreign keys, deadlines)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        # timeout: how long a writer waits for SQLite's lock
        engine = create_engine(u, connect_args={"check_same_thread": False, "timeout": statement_timeout_s})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed row survives power loss, which "durable" means here.
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()
            # SQLite has no statement timeout: a progress handler interrupts a statement past its
            # deadline (set before each statement, below); the statement fails "interrupted".
            deadline = record.info["yihu_deadline"] = [None]
            dbapi_conn.set_progress_handler(
                lambda: 1 if deadline[0] is not None and time.monotonic() > deadline[0] else 0, 10000)

        @event.listens_for(engine, "before_cursor_execute")
        def _arm(conn, _cursor, _statement, _params, _context, _many):
            deadline = conn.connection.info.get("yihu_deadline")
            if deadline is not None:
                deadline[0] = time.monotonic() + statement_timeout_s
        return engine
    # connect_timeout joins what the URL's query already says (options=..., in tests)
    engine = create_engine(u, pool_size=5, max_overflow=5, pool_timeout=pool_timeout_s,
                           connect_args={"connect_timeout": max(1, math.ceil(pool_timeout_s))})

    @event.listens_for(engine, "checkout")
    def _begin_is_the_ping(dbapi_conn, _record, _proxy):
        # The pre-ping (a connection the server or the network dropped is replaced, and every
        # pooled one older than it, as pool_pre_ping does) is the transaction's own BEGIN, which
        # the driver would send before the first statement anyway: one round trip, not two.
        pgconn = dbapi_conn.pgconn
        if pgconn.transaction_status != _IDLE:
            return          # a transaction already open (autocommit off, a statement run): alive
        command = b"SELECT 1" if dbapi_conn.autocommit else b"BEGIN"
        try:
            result = pgconn.exec_(command)      # libpq's PQexec: releases the GIL while it waits
        except _DriverError as e:
            raise exc.InvalidatePoolError(f"database connection lost ({e})") from e
        if result.status not in _PING_OK:
            raise exc.InvalidatePoolError(f"database connection lost ({command.decode()}: "
                                          f"{result.get_error_message()!r})")

    @event.listens_for(engine, "set_connection_execution_options")
    def _isolation_outside_the_ping(conn, opts):
        # A connection given another isolation level (AUTOCOMMIT for ANALYZE, VACUUM) before its
        # first statement: the driver changes it only outside a transaction, so the checkout's
        # BEGIN is rolled back first (nothing was done in it).
        if "isolation_level" in opts and not conn.in_transaction():
            driver = conn.connection.driver_connection
            if driver.pgconn.transaction_status != _IDLE:
                driver.rollback()

    @event.listens_for(engine, "connect")
    def _session_timeouts(dbapi_conn, _record):
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {int(statement_timeout_s * 1000)}")
            # A connection cut mid-transaction (a network fault) can leave its server session "idle
            # in transaction", holding row locks that every later write of ours would wait on
            # forever.  The server ends such a session after this long; retried writes go on.
            cur.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
        dbapi_conn.autocommit = autocommit
    return engine


WAKE_KEY = "yihu.wake"               # conn.info: kinds of work this transaction committed (cluster/wakeups.py)
IDLE_IN_TRANSACTION_MS = 30_000     # no unit of work of ours stays idle inside a transaction


def is_deadline(exc: BaseException) -> bool:
    """Did a statement fail because it passed its deadline?"""
    if isinstance(exc, (DatabaseDeadline, SaTimeoutError)):    # SaTimeoutError: no pooled connection in time
        return True
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if type(orig).__name__ == "QueryCanceled":        # PostgreSQL: canceling statement due to statement timeout
        return True
    return type(orig).__name__ == "OperationalError" and str(orig) == "interrupted"     # SQLite


class Database:
    """The gateway's database: an engine plus a dedicated thread pool.

    `run(fn, *args)` runs `fn(conn, *args)` in a transaction on a pool thread and returns a
    Deferred firing with its result after COMMIT (or failing after ROLLBACK).
    """

    def __init__(self, reactor, url: str, *, threads: int | None = None, engine: Engine | None = None,
                 statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
                 pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S, timer: Callable[[], float] = time.monotonic,
                 drill: bool = False):
        self.reactor = reactor
        self.drill = drill      # drill mode (gateway/mode.py): every event it records says "drill": true
        self.url = url
        self.engine = engine or make_engine(url, statement_timeout_s=statement_timeout_s,
                                            pool_timeout_s=pool_timeout_s)
        self.statement_timeout_s, self.pool_timeout_s = statement_timeout_s, pool_timeout_s
        self.timer = timer      # measures the wait for a thread (monotonic; a fake one in tests)
        if threads is None:
            threads = 1 if is_sqlite(url) else 4
        self.threads = threads
        self.pool = ThreadPool(minthreads=1, maxthreads=threads, name="yihu-db")
        self._started = False
        self._shutdown_trigger = None
        self.reactor_thread_id: int | None = None
        self._event_listeners: list[Callable[[list], None]] = []
        self._wake_listeners: list[Callable[[set], None]] = []

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.reactor_thread_id = threading.get_ident()
        self.pool.start()
        # Stop after the services have flushed: "after" shutdown, not "during".
        self._shutdown_trigger = self.reactor.addSystemEventTrigger("after", "shutdown", self.stop)

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._shutdown_trigger is not None:
            try:
                self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
            except (ValueError, KeyError, TypeError):
                pass
            self._shutdown_trigger = None
        self.pool.stop()      # waits for work in flight: nothing is left half-written
        self.engine.dispose()

    # --- work ---------------------------------------------------------------------------------
    def add_event_listener(self, fn: Callable[[list], None]) -> None:
        """fn(events) on the reactor thread after each COMMIT that recorded events (eventlog)."""
        self._event_listeners.append(fn)

    def add_wake_listener(self, fn: Callable[[set], None]) -> None:
        """fn(kinds) on the reactor thread after each COMMIT whose work called
        gateway.cluster.wakeups.notify_tx (the in-process half of the wake-ups)."""
        self._wake_listeners.append(fn)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred:
        """Run fn(conn, *args, **kwargs) in one transaction on the database pool."""
        if not self._started:
            raise RuntimeError("database pool is not started")
        d = deferToThreadPool(self.reactor, self.pool, self._in_transaction, fn, args, kwargs, self.timer())
        d.addCallbacks(self._committed, self._failed, errbackArgs=(fn,))
        return d

    def _committed(self, outcome):
        result, events, woken = outcome
        if woken:
            for listener in list(self._wake_listeners):
                try:
                    listener(woken)
                except Exception:  # noqa: BLE001 - the commit stands
                    log.failure("wake-up listener failed after a commit")
        if events:
            for listener in list(self._event_listeners):
                try:
                    listener(events)
                except Exception:  # noqa: BLE001 - the commit stands; a listener must not undo the caller
                    log.failure("event listener failed after a commit")
        return result

    def _failed(self, f, fn):
        """A deadline is logged here, on the reactor, naming the unit of work; the caller decides
        whether to retry (durable work is retried by its owner)."""
        if f.check(DatabaseDeadline):
            metrics.DB_DEADLINES.labels(kind=f.value.kind).inc()
            log.error("database deadline passed: {err}", err=f.getErrorMessage(), operation=_name(fn))
        return f

    def _in_transaction(self, fn, args, kwargs, enqueued: float | None = None):
        if threading.get_ident() == self.reactor_thread_id:
            raise AssertionError("database work on the reactor thread")
        if enqueued is not None:
            waited = self.timer() - enqueued
            if waited > self.pool_timeout_s:
                metrics.DB_ERRORS.inc()
                raise DatabaseDeadline(f"{_name(fn)}: waited {waited:.1f} s for a database thread "
                                       f"(gateway.db_pool_timeout_s = {self.pool_timeout_s:g}); not run", "pool")
        t0 = time.perf_counter()
        try:
            with self.engine.begin() as conn:
                recorded = eventlog.begin_recording(conn, drill=self.drill)
                woken = conn.info[WAKE_KEY] = set()
                pg = conn.dialect.name == "postgresql"
                conn.info[bulk.AT_COMMIT] = pg
                try:
                    result = fn(conn, *args, **kwargs)
                    if pg:
                        # The writes still held, the other nodes' wake-ups and the COMMIT: one
                        # round trip (NOTIFY is delivered at COMMIT wherever it is sent).
                        tail = []
                        if woken:
                            from gateway.cluster.wakeups import notify_statement
                            tail.append(notify_statement(woken))
                        bulk.commit_with(conn, tail)
                finally:
                    eventlog.end_recording(conn)
                    conn.info.pop(WAKE_KEY, None)
                    conn.info.pop(bulk.AT_COMMIT, None)
                    conn.info.pop(bulk.HELD, None)
            return result, recorded, woken   # committed: now the listeners may be told
        except Exception as e:
            metrics.DB_ERRORS.inc()
            if is_deadline(e):
                took = time.perf_counter() - t0
                raise DatabaseDeadline(f"{_name(fn)}: no answer from the database within its deadline "
                                       f"({took:.1f} s; gateway.db_statement_timeout_s = "
                                       f"{self.statement_timeout_s:g}, pool wait {self.pool_timeout_s:g}); "
                                       "rolled back", "pool" if isinstance(e, SaTimeoutError) else "statement") from e
            raise
        finally:
            metrics.DB_QUERY_SECONDS.observe(time.perf_counter() - t0)

    def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """For the CLI and migrations only (no reactor running): run in the calling thread."""
        with self.engine.begin() as conn:
            eventlog.begin_recording(conn, drill=self.drill)
            try:
                return fn(conn, *args, **kwargs)    # a running gateway's tail finds its events in the log
            finally:
                eventlog.end_recording(conn)


def _name(fn) -> str:
    """A unit of work as logs name it: its function's name (store.hand_deliveries_tx ...)."""
    module = (getattr(fn, "__module__", "") or "").removeprefix("gateway.")
    return f"{module}.{getattr(fn, '__qualname__', repr(fn))}".lstrip(".")


def default_sqlite_url(data_dir: str | os.PathLike, name: str = "yihu.sqlite") -> str:
    return f"sqlite:///{Path(data_dir).resolve() / name}"


__all__ = ["Database", "DatabaseDeadline", "Connection", "make_engine", "is_sqlite", "default_sqlite_url"]
