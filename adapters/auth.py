"""Who may use the HTTP port: API keys, scopes, refusals, and the brake on a peer that keeps trying.

`Authenticator.check(request, scope)` fires with the caller's Principal, or fails with an
ApiError (401 no key or a wrong one, 403 a scope too low, 429 a peer refused too often).  Each
refusal is one audit_log row and one `yihu_auth_refused_total{reason}`.  The key comes from
`Authorization: Bearer KEY`; the wall board and the event stream also take it from their cookie
(set by `/board?key=`), never the API routes (a cookie would let another web page act for the
browser).

Open access: in drill mode bound to loopback (the emulators) a request with no key is let
in as `open:loopback` with the dispatch scope; a key that is presented is still checked.
"""
from __future__ import annotations

import ipaddress
from collections import OrderedDict
from datetime import datetime, timezone

from sqlalchemy import insert
from twisted.internet import defer
from twisted.logger import Logger

from adapters.apikeys import Principal, touch_key_tx, verify_key_tx
from gateway import metrics
from gateway.storage.schema import audit_log

log = Logger()

COOKIE = b"yihu_key"
OPEN = Principal("open", "dispatch", open_access=True)


def is_loopback(interface: str) -> bool:
    try:
        return ipaddress.ip_address(interface.strip("[]")).is_loopback
    except ValueError:
        return interface == "localhost"


def api_is_open(config) -> bool:
    """The drill's open API: drill mode (gateway/mode.py) with HTTP on loopback only."""
    return bool(config.drill) and is_loopback(config.http.interface)


class RefusalBrake:
    """Per peer: more than `burst` refusals within `window` seconds, and the peer gets 429 for
    the rest of the window; meanwhile keys are not looked up, and one audit row tells of it."""

    def __init__(self, clock, burst: int = 20, window: float = 60.0, peers: int = 10000):
        self.clock, self.burst, self.window, self.peers = clock, burst, window, peers
        self._seen: OrderedDict[str, list[float]] = OrderedDict()
        self._announced: dict[str, float] = {}

    def _recent(self, peer: str) -> list[float]:
        cutoff = self.clock.seconds() - self.window
        times = [t for t in self._seen.get(peer, ()) if t > cutoff]
        if times:
            self._seen[peer] = times
            self._seen.move_to_end(peer)
        else:
            self._seen.pop(peer, None)
        return times

    def braked(self, peer: str) -> float | None:
        """Seconds to wait, when the peer is braked."""
        times = self._recent(peer)
        if len(times) >= self.burst:
            return max(1.0, times[0] + self.window - self.clock.seconds())
        return None

    def first_of_episode(self, peer: str) -> bool:
        """True once per braking episode of a peer (the first 429 it gets)."""
        times = self._seen.get(peer)
        if not times or self._announced.get(peer) == times[0]:
            return False
        self._announced[peer] = times[0]
        return True

    def note(self, peer: str) -> None:
        self._seen.setdefault(peer, []).append(self.clock.seconds())
        self._seen.move_to_end(peer)
        while len(self._seen) > self.peers:      # a spray of addresses cannot grow this forever
            gone, _ = self._seen.popitem(last=False)
            self._announced.pop(gone, None)


def _peer(request) -> str:
    addr = request.getClientAddress()
    return getattr(addr, "host", None) or str(addr)


def bearer(request) -> str | None:
    raw = request.getHeader(b"authorization")
    if raw is None:
        return None
    scheme, _, value = raw.decode("latin-1").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else ""


class Authenticator:
    def __init__(self, clock, database, *, open_access: bool = False, brake: RefusalBrake | None = None,
                 touch_every: float = 60.0):
        self.clock, self.database, self.open_access = clock, database, open_access
        self.brake = brake or RefusalBrake(clock)
        self.touch_every = touch_every
        self._touched: dict[str, float] = {}

    @defer.inlineCallbacks
    def check(self, request, scope: str, *, cookie: bool = False, key: str | None = None):
        from adapters.api import ApiError
        peer = _peer(request)
        what = f"{request.method.decode('ascii', 'replace')} {request.path.decode('utf-8', 'replace')}"[:200]
        wait = self.brake.braked(peer)
        if wait is not None:
            metrics.AUTH_REFUSED.labels(reason="rate_limited").inc()
            if self.brake.first_of_episode(peer):
                # One row when a peer is braked; then only the counter, so a flood cannot
                # turn into a flood of writes.
                yield self._audit(peer, what, "rate_limited", None, scope, braked_for=int(wait))
            raise ApiError(429, f"too many refused requests from {peer}; try again in {int(wait)} s",
                           field="Authorization", retry_after=int(wait))
        if key is None:
            key = bearer(request)
        if key is None and cookie:
            key = (request.getCookie(COOKIE) or b"").decode("ascii", "replace") or None
        if key is None:
            if self.open_access and OPEN.allows(scope):
                return OPEN
            yield self._refuse(peer, what, "missing_key", None, scope)
            raise ApiError(401, f"an API key is needed: Authorization: Bearer KEY (scope {scope} or higher)",
                           field="Authorization", required_scope=scope)
        principal = yield self.database.run(verify_key_tx, key) if key else defer.succeed(None)
        if principal is None:
            yield self._refuse(peer, what, "bad_key", None, scope)
            raise ApiError(401, "the API key is unknown, revoked or malformed", field="Authorization",
                           required_scope=scope)
        if not principal.allows(scope):
            yield self._refuse(peer, what, "scope", principal.name, scope)
            raise ApiError(403, f"API key {principal.name!r} has scope {principal.scope}; "
                                f"this needs {scope}", field="Authorization", required_scope=scope,
                           key_scope=principal.scope)
        self._touch(principal.name)
        return principal

    def _touch(self, name: str) -> None:
        """`last used`, written at most once a minute per key: not one write per GET."""
        t = self.clock.seconds()
        if t - self._touched.get(name, -1e18) < self.touch_every:
            return
        self._touched[name] = t
        self.database.run(touch_key_tx, name, datetime.fromtimestamp(t, timezone.utc)).addErrback(
            lambda f: log.warn("API key {name}: could not record its last use: {e}", name=name,
                               e=f.getErrorMessage()))

    def _refuse(self, peer: str, what: str, reason: str, key_name: str | None, scope: str):
        """Count, brake and audit one refusal.  The audit row is committed before the answer;
        if the database is down, the refusal still goes out (refusing is always safe)."""
        metrics.AUTH_REFUSED.labels(reason=reason).inc()
        self.brake.note(peer)
        return self._audit(peer, what, reason, key_name, scope)

    def _audit(self, peer: str, what: str, reason: str, key_name: str | None, scope: str, **more):
        log.warn("HTTP refused {what} from {peer}: {reason}{key}", what=what, peer=peer, reason=reason,
                 key=f" (key {key_name})" if key_name else "")
        at = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        row = dict(at=at, actor=f"http:{peer}"[:100], action="http.refused", subject=what,
                   detail={"reason": reason, "peer": peer, "key": key_name, "needed_scope": scope, **more})
        d = self.database.run(lambda conn: conn.execute(insert(audit_log).values(**row)))
        d.addErrback(lambda f: log.error("HTTP refusal from {peer} could not be audited: {e}", peer=peer,
                                         e=f.getErrorMessage()))
        return d
