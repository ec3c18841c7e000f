"""SQLAlchemy from Twisted: every unit of work runs in a thread pool of its own.

After buildbot's db/pool.py: the reactor thread never touches the database, and neither does
the reactor's default thread pool (name resolution and other work must not queue behind a slow
disk).  SQLite gets exactly one thread: it serialises writers anyway, and one thread keeps
its locking simple.  A unit of work is a function taking a Connection inside a transaction;
when its Deferred fires, the transaction is committed ("durable before acknowledged").
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from gateway import metrics
from gateway import eventlog  # (module: eventlog imports the schema, which imports this package)

T = TypeVar("T")
log = Logger()


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str) -> Engine:
    """An engine with the settings Yihu relies on (durability, foreign keys)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed row survives power loss, which "durable" means here.
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()
        return engine
    return create_engine(u, pool_pre_ping=True, pool_size=5, max_overflow=5)


class Database:
    """The gateway's database: an engine plus a dedicated thread pool.

    `run(fn, *args)` runs `fn(conn, *args)` in a transaction on a pool thread and returns a
    Deferred firing with its result after COMMIT (or failing after ROLLBACK).
    """

    def __init__(self, reactor, url: str, *, threads: int | None = None, engine: Engine | None = None):
        self.reactor = reactor
        self.url = url
        self.engine = engine or make_engine(url)
        if threads is None:
            threads = 1 if is_sqlite(url) else 4
        self.threads = threads
        self.pool = ThreadPool(minthreads=1, maxthreads=threads, name="yihu-db")
        self._started = False
        self._shutdown_trigger = None
        self.reactor_thread_id: int | None = None
        self._event_listeners: list[Callable[[list], None]] = []

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

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred:
        """Run fn(conn, *args, **kwargs) in one transaction on the database pool."""
        if not self._started:
            raise RuntimeError("database pool is not started")
        d = deferToThreadPool(self.reactor, self.pool, self._in_transaction, fn, args, kwargs)
        return d.addCallback(self._committed)

    def _committed(self, outcome):
        result, events = outcome
        if events:
            for listener in list(self._event_listeners):
                try:
                    listener(events)
                except Exception:  # noqa: BLE001 - the commit stands; a listener must not undo the caller
                    log.failure("event listener failed after a commit")
        return result

    def _in_transaction(self, fn, args, kwargs):
        if threading.get_ident() == self.reactor_thread_id:
            raise AssertionError("database work on the reactor thread")
        t0 = time.perf_counter()
        try:
            with self.engine.begin() as conn:
                recorded = eventlog.begin_recording(conn)
                try:
                    result = fn(conn, *args, **kwargs)
                finally:
                    eventlog.end_recording(conn)
            return result, recorded          # committed: now the listeners may be told
        except Exception:
            metrics.DB_ERRORS.inc()
            raise
        finally:
            metrics.DB_QUERY_SECONDS.observe(time.perf_counter() - t0)

    def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """For the CLI and migrations only (no reactor running): run in the calling thread."""
        with self.engine.begin() as conn:
            return fn(conn, *args, **kwargs)    # a running gateway's tail finds its events in the log


def default_sqlite_url(data_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'yihu.sqlite'}"


__all__ = ["Database", "Connection", "make_engine", "is_sqlite", "default_sqlite_url"]
