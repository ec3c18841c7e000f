"""Refusals at the FastAGI trust boundary: counted, logged naming who was refused, and audited.

Every refusal increments `yihu_auth_refused_total{reason}`.  A refusal about a call (a bad
order-call token, a wrong PIN) is one `audit_log` row each: such calls come through Asterisk,
which paces them.  Refused peers are not paced by anyone, so a burst from one address is
rate-limited: the first refusal in a window is logged and audited at once, the rest are
counted and summed into one row (and one log line) when the window closes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import insert
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger

from gateway import metrics
from gateway.storage.schema import audit_log

log = Logger()


@dataclass
class _Window:
    first_at: float
    suppressed: int = 0
    timer: object = None


class RefusalAudit:
    """db: the gateway's Database (None in drills: logged and counted only)."""

    def __init__(self, reactor, db, *, window: float = 60.0):
        self.reactor = reactor
        self.db = db
        self.window = window
        self._peers: dict[tuple[str, str], _Window] = {}

    def refused(self, reason: str, actor: str, subject: str, detail: dict) -> Deferred:
        """One refusal, one audit row; Deferred fires once it is committed (never fails)."""
        metrics.AUTH_REFUSED.labels(reason).inc()
        return self._write(reason, actor, subject, detail)

    def refused_peer(self, host: str, reason: str, detail: dict) -> Deferred:
        """A connection refused by address, rate-limited per address and reason."""
        metrics.AUTH_REFUSED.labels(reason).inc()
        key = (host, reason)
        w = self._peers.get(key)
        if w is not None:
            w.suppressed += 1
            return succeed(None)
        self._peers[key] = _Window(self.reactor.seconds(),
                                   timer=self.reactor.callLater(self.window, self._close_window, key, detail))
        log.warn("FastAGI: refused connection from {peer} ({reason}); further refusals from it are "
                 "summed for {w:.0f} s", peer=host, reason=reason, w=self.window)
        return self._write(reason, f"peer:{host}", f"fastagi peer {host}", {**detail, "count": 1})

    def _close_window(self, key, detail) -> Deferred:
        w = self._peers.pop(key, None)
        if w is not None and w.timer.active():
            w.timer.cancel()
        if w is None or not w.suppressed:
            return succeed(None)
        host, reason = key
        log.warn("FastAGI: {n} more connections from {peer} refused ({reason}) in the last {w:.0f} s",
                 n=w.suppressed, peer=host, reason=reason, w=self.window)
        return self._write(reason, f"peer:{host}", f"fastagi peer {host}",
                           {**detail, "count": w.suppressed, "rate_limited": True, "window_s": self.window})

    def flush(self) -> Deferred:
        """Write the open windows' counts now (at shutdown, so that none is lost)."""
        return gatherResults([self._close_window(key, {}) for key in list(self._peers)])

    def _write(self, reason, actor, subject, detail) -> Deferred:
        if self.db is None:
            return succeed(None)
        at = datetime.fromtimestamp(self.reactor.seconds(), tz=timezone.utc)
        d = self.db.run(_insert_refusal, at, actor[:100], f"auth.refused.{reason}"[:64], subject[:200],
                        {"reason": reason, **detail})

        def failed(f):
            log.failure("refusal of {actor} ({reason}) not audited", f, actor=actor, reason=reason)
        return d.addErrback(failed)


def _insert_refusal(conn, at, actor, action, subject, detail):
    conn.execute(insert(audit_log).values(at=at, actor=actor, action=action, subject=subject, detail=detail))
