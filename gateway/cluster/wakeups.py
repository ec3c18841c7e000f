"""Wake-ups: work committed on one node wakes the parts that act on it, on every node.

Work staged in a transaction (a new order and its deliveries, an SMS, a call attempt, an
escalation step, a reply) calls `notify_tx(conn, kind)` inside it.  On PostgreSQL that is
`pg_notify('yihu_work', kind)`, delivered to every listening node when (and only if) the
transaction commits; each node runs one listener (`PgListener`: a dedicated thread with its own
psycopg connection, reconnecting with backoff) that hands the kinds to the reactor.  In-process,
the Database tells the registry after the COMMIT (SQLite has only that half: one node).  The
parts' polling stays as the fallback, no longer the latency.

    wakeups.on("step", engine.refresh)        # the registry (one per gateway)
    notify_tx(conn, "step")                   # inside the unit of work that staged a step
"""
from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable

from sqlalchemy.engine import make_url
from twisted.application import service
from twisted.logger import Logger

from gateway import metrics
from gateway.health import PartHealth
from gateway.storage.pool import WAKE_KEY

log = Logger()

CHANNEL = "yihu_work"
KINDS = ("order", "sms", "call", "step", "reply")


def notify_tx(conn, kind: str) -> None:
    """Inside the transaction that committed work of `kind`: wake the nodes once it commits.
    Once per kind and transaction (a fan-out staging 80 messages sends one notification).  In a
    unit of work of this process's Database the kinds are gathered and notified in one statement
    sent with the COMMIT, in its round trip (notify_statement, bulk.commit_with): PostgreSQL
    delivers a NOTIFY at COMMIT, wherever in the transaction it was sent."""
    woken = conn.info.get(WAKE_KEY)          # set for a unit of work of this process's Database
    if woken is not None:                    # notified by the Database before the COMMIT; here after it
        woken.add(kind)
        return
    notify_all(conn, {kind})


def notify_statement(kinds) -> tuple[str, dict]:
    """pg_notify for each kind, in one statement (the driver's own: psycopg's parameters)."""
    kinds = sorted(kinds)
    return ("SELECT " + ", ".join(f"pg_notify(%(channel)s, %(k{i})s)" for i in range(len(kinds))),
            {"channel": CHANNEL, **{f"k{i}": k for i, k in enumerate(kinds)}})


def notify_all(conn, kinds) -> None:
    """pg_notify for each kind (nothing on SQLite: one node, woken in-process)."""
    if kinds and conn.dialect.name == "postgresql":
        conn.exec_driver_sql(*notify_statement(kinds))


class Wakeups:
    """The registry: `on(kind, fn)`; `wake(kind)` calls them soon on the reactor, once however many
    wake-ups of that kind arrived meanwhile."""

    def __init__(self, clock):
        self.clock = clock
        self._fns: dict[str, list[Callable]] = defaultdict(list)
        self._due: set[str] = set()
        self.woken: dict[str, int] = defaultdict(int)      # wake-ups handed on, by kind (tests, health)

    def on(self, kind: str, fn: Callable) -> None:
        self._fns[kind].append(fn)

    def wake(self, kind: str) -> None:
        if kind in self._due or kind not in self._fns:
            return
        self._due.add(kind)
        self.clock.callLater(0, self._fire, kind)

    def wake_all(self) -> None:
        for kind in list(self._fns):
            self.wake(kind)

    def _fire(self, kind: str) -> None:
        self._due.discard(kind)
        self.woken[kind] += 1
        for fn in list(self._fns[kind]):
            try:
                r = fn()
                if hasattr(r, "addErrback"):
                    r.addErrback(lambda f, fn=fn: log.failure("wake-up {kind}: {fn} failed", f, kind=kind,
                                                              fn=getattr(fn, "__qualname__", repr(fn))))
            except Exception:  # noqa: BLE001 - one part's failure must not starve the others
                log.failure("wake-up {kind}: {fn} failed", kind=kind, fn=getattr(fn, "__qualname__", repr(fn)))


def psycopg_conninfo(url: str) -> str:
    """The SQLAlchemy URL as psycopg's conninfo (the password kept, never logged)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgListener(service.Service):
    """LISTEN yihu_work on a connection of its own, in a thread of its own; every notification's
    kind goes to `wakeups` on the reactor (callFromThread).  A lost connection is retried with
    backoff (1 s doubling to 30 s); after each (re)connection every kind is woken once, for the
    work committed while it was down.  Health: `wake-ups` (down is degraded: polling covers)."""

    name = "wake-ups"

    def __init__(self, reactor, url: str, wakeups: Wakeups, *, backoff_max: float = 30.0, poll_s: float = 1.0):
        self.reactor, self.url, self.wakeups = reactor, url, wakeups
        self.backoff_max, self.poll_s = backoff_max, poll_s
        self.connected = False
        self.last_error: str | None = None
        self.received = 0
        self.backend_pid: int | None = None     # the LISTEN session's server process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_connected: list[Callable[[], None]] = []      # tests: told on the reactor at each LISTEN

    def startService(self):
        super().startService()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="yihu-wakeups", daemon=True)
        self._thread.start()

    def stopService(self):
        super().stopService()
        self._stop.set()          # the thread ends within poll_s; it holds nothing to flush

    # --- the listener's thread ---------------------------------------------------------------------
    def _run(self) -> None:
        import psycopg
        delay = 1.0
        while not self._stop.is_set():
            try:
                with psycopg.connect(psycopg_conninfo(self.url), autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.backend_pid = conn.info.backend_pid
                    delay = 1.0
                    self.reactor.callFromThread(self._up)
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=self.poll_s):
                            self.reactor.callFromThread(self._got, n.payload)
            except Exception as e:  # noqa: BLE001 - any failure: reconnect with backoff
                reason = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
                self.reactor.callFromThread(self._down, reason, delay)
                # an interruptible wait (stopService sets the event): this thread's own backoff
                self._stop.wait(delay)
                delay = min(self.backoff_max, delay * 2)
        self.reactor.callFromThread(self._ended)

    # --- on the reactor ------------------------------------------------------------------------------
    def _up(self):
        was_down = self.last_error is not None
        self.connected, self.last_error = True, None
        metrics.WAKEUP_LISTENER_UP.set(1)
        log.info("wake-ups: listening on {ch}{again}", ch=CHANNEL, again=" again" if was_down else "")
        self.wakeups.wake_all()        # whatever was committed while nobody listened
        for fn in list(self.on_connected):
            fn()

    def _got(self, kind: str):
        self.received += 1
        self.wakeups.wake(kind)

    def _down(self, reason: str, delay: float):
        if self._stop.is_set():
            return
        if self.connected or self.last_error is None:
            log.error("wake-ups: LISTEN connection lost ({err}); reconnecting in {d:g} s, polling meanwhile",
                      err=reason, d=delay)
        self.connected, self.last_error = False, reason
        metrics.WAKEUP_LISTENER_UP.set(0)

    def _ended(self):
        self.connected = False
        metrics.WAKEUP_LISTENER_UP.set(0)

    def health(self) -> PartHealth:
        if self.connected:
            return PartHealth("wake-ups", True, f"LISTEN {CHANNEL} ({self.received} received)", essential=False)
        return PartHealth("wake-ups", False, f"not listening ({self.last_error or 'connecting'}); the parts poll",
                          essential=False)
