"""The AMI link: one logged-in AMI session to Asterisk, kept up forever.

- ``twisted.application.internet.ClientService`` reconnects with exponential backoff (and
  jitter), forever.  A connection counts as up only after the banner, the login *and* the
  resync; one that fails any of them (wrong secret, stalled server, resync timeout) is dropped
  and the backoff keeps growing across such connections.
- After every (re)connect the link asks Asterisk what is live (``CoreShowChannels`` and
  ``QueueStatus``) and hands the snapshot to the resync listeners (the hotline tracker), so
  that calls which ended while the link was down get closed and calls that began get opened.
- It is the gateway's ``IOriginator``: an Async Originate whose result comes from the
  OriginateResponse event carrying *our* ActionID (Asterisk broadcasts OriginateResponse to
  every AMI session).  An Originate is never replayed: if the connection drops before its
  OriginateResponse, it fails with ``OriginateInterrupted`` and the caller (the order-call
  logic) decides, knowing the call may or may not have been placed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from gateway import metrics
from gateway.ami.actionid import default_generator
from gateway.ami.message import AmiMessage
from gateway.ami.protocol import (AmiActionError, AmiClientProtocol, AmiConnectionLost, AmiError,
                                  AmiNotConnected, AmiTimeout)
from gateway.interfaces import IOriginator, OriginateResult

log = Logger()


class OriginateInterrupted(AmiConnectionLost):
    """The AMI connection dropped before the OriginateResponse: the call may or may not exist.
    It is not retried by the link."""


class OriginateTimeout(AmiTimeout):
    """No OriginateResponse within the originate timeout plus a grace period."""


@dataclass
class ResyncSnapshot:
    """What Asterisk said was live right after a (re)connect."""
    at: float                                   # clock seconds when the lists completed
    channels: list[AmiMessage] = field(default_factory=list)     # CoreShowChannel events
    queue_events: list[AmiMessage] = field(default_factory=list)  # QueueParams/Member/Entry
    reconnect: bool = False                     # False for the first connection of the process

    def queue_entries(self) -> list[AmiMessage]:
        return [e for e in self.queue_events if e.name == "QueueEntry"]


class _Factory(Factory):
    def __init__(self, link: "AmiLink"):
        self.link = link

    def buildProtocol(self, addr):
        link = self.link
        p = AmiClientProtocol(link.clock, on_event=link._dispatch, id_gen=link.id_gen,
                              action_timeout=link.action_timeout, name=link.name)
        p.factory = self
        p.on_connection_lost = link._connection_lost
        p.on_connection_made = link._connection_made
        return p


@implementer(IOriginator)
class AmiLink(service.Service):
    """Keeps one AMI session up and feeds its events to listeners.

    Listeners: ``add_event_listener(fn(msg))`` for every event, in order;
    ``add_resync_listener(obj)`` with ``resync_begin() -> token`` (called just before the
    CoreShowChannels is sent) and ``resync_end(token, ResyncSnapshot)``.
    """

    name = "ami"

    def __init__(self, reactor, host: str = "127.0.0.1", port: int = 5038, *,
                 username: str, secret: str, auth: str = "md5", events: str = "on",
                 endpoint=None, clock=None, action_timeout: float = 10.0,
                 ping_interval: float = 20.0, ping_timeout: float = 10.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 backoff_factor: float = 1.7, resync_timeout: float = 30.0,
                 originate_grace: float = 30.0, id_gen=None):
        self.reactor = reactor
        self.clock = clock or reactor
        self.host, self.port = host, port
        self.username, self.secret = username, secret
        self.auth, self.events = auth, events
        self.action_timeout = action_timeout
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.resync_timeout = resync_timeout
        self.originate_grace = originate_grace
        self.id_gen = id_gen or default_generator()
        self.endpoint = endpoint or TCP4ClientEndpoint(reactor, host, port, timeout=10)
        self._event_listeners: list[Callable[[AmiMessage], None]] = []
        self._resync_listeners: list = []
        self._connect_listeners: list[Callable[[bool], None]] = []
        self._originates: dict[str, tuple[defer.Deferred, object, AmiClientProtocol]] = {}
        self.protocol: AmiClientProtocol | None = None
        self.connected = False
        self.connections = 0
        self.last_error: str | None = None
        self.banner: str | None = None
        self._backoff = backoffPolicy(initialDelay=backoff_initial, maxDelay=backoff_max,
                                      factor=backoff_factor)
        self._unusable = 0          # connections in a row that never got logged in and resynced
        self._ready_waiters: list[defer.Deferred] = []
        # Login and resync run from connectionMade, not from ClientService's prepareConnection:
        # a connection lost while prepareConnection runs hits a missing transition in
        # ClientService's state machine (NoTransition from _clientDisconnected in Connecting or
        # Waiting).  Backoff still grows across unusable connections (see _retry_delay).
        self._client = ClientService(self.endpoint, _Factory(self), retryPolicy=self._retry_delay,
                                     clock=self.clock)

    # --- listeners ----------------------------------------------------------------------------
    def add_event_listener(self, fn: Callable[[AmiMessage], None]) -> None:
        self._event_listeners.append(fn)

    def add_resync_listener(self, listener) -> None:
        self._resync_listeners.append(listener)

    def add_connect_listener(self, fn: Callable[[bool], None]) -> None:
        """fn(True) once logged in and resynced, fn(False) when the connection is lost."""
        self._connect_listeners.append(fn)

    # --- service ------------------------------------------------------------------------------
    def startService(self):
        super().startService()
        self._client.startService()

    def stopService(self):
        super().stopService()
        return self._client.stopService()

    def when_ready(self) -> defer.Deferred:
        """Deferred[AmiClientProtocol] once a connection is logged in and resynced."""
        if self.connected and self.protocol is not None:
            return defer.succeed(self.protocol)
        d = defer.Deferred()
        self._ready_waiters.append(d)
        return d

    def _retry_delay(self, failed_attempts: int) -> float:
        # ClientService resets its count on every TCP connect; count unusable connections
        # (refused login, stalled banner, failed resync) too, so that a wrong secret does not
        # turn into a login every second.
        return self._backoff(max(failed_attempts, self._unusable))

    def status(self) -> dict:
        return {"connected": self.connected, "connections": self.connections,
                "banner": self.banner, "last_error": self.last_error,
                "pending_originates": len(self._originates)}

    # --- connection lifecycle --------------------------------------------------------------
    def _connection_made(self, proto: AmiClientProtocol) -> None:
        self._prepare(proto).addErrback(self._unusable_connection, proto)

    def _unusable_connection(self, f, proto: AmiClientProtocol) -> None:
        self._unusable += 1
        self.last_error = f"{f.type.__name__}: {f.getErrorMessage()}"
        log.error("AMI {host}:{port}: connection not usable ({n} in a row): {err}",
                  host=self.host, port=self.port, n=self._unusable, err=self.last_error)
        if self.protocol is proto:
            self.protocol = None
        if proto.connected:
            proto.drop("login or resync failed")

    @defer.inlineCallbacks
    def _prepare(self, proto: AmiClientProtocol):
        banner = proto.banner
        timer = self.clock.callLater(self.action_timeout, banner.cancel)
        try:
            self.banner = yield banner
        except defer.CancelledError:
            raise AmiTimeout(f"no banner within {self.action_timeout:g} s") from None
        finally:
            if timer.active():
                timer.cancel()
        yield proto.login(self.username, self.secret, auth=self.auth, events=self.events,
                          timeout=self.action_timeout)
        self.protocol = proto
        yield self._resync(proto)
        if not proto.connected:
            raise AmiConnectionLost("connection lost during resync")
        self._unusable = 0
        self.connections += 1
        if self.connections > 1:
            metrics.AMI_RECONNECTS.inc()
        self.connected = True
        self.last_error = None
        metrics.AMI_CONNECTED.set(1)
        proto.start_keepalive(self.ping_interval, self.ping_timeout)
        log.info("AMI {host}:{port}: logged in as {user} ({banner}), resynced",
                 host=self.host, port=self.port, user=self.username, banner=self.banner)
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(proto)
        for fn in list(self._connect_listeners):
            self._safe(fn, True)

    def resync(self, listener) -> defer.Deferred:
        """Resync one listener now, on the connection in use (a node that has just taken the lease
        of this Asterisk's events); when the link is down its next login resyncs everyone."""
        proto = self.protocol
        if not self.connected or proto is None:
            return defer.succeed(False)
        return self._resync(proto, [listener]).addCallback(lambda _: True)

    @defer.inlineCallbacks
    def _resync(self, proto: AmiClientProtocol, listeners=None):
        listeners = list(self._resync_listeners) if listeners is None else listeners
        tokens = [(lst, lst.resync_begin()) for lst in listeners]
        chans = yield proto.send_action("CoreShowChannels", timeout=self.resync_timeout)
        try:
            queues = yield proto.send_action("QueueStatus", timeout=self.resync_timeout)
            queue_events = queues.events
        except AmiActionError as e:     # app_queue not loaded, or no permission
            log.warn("AMI: QueueStatus refused ({err}); resync from channels only", err=e)
            queue_events = []
        snap = ResyncSnapshot(at=self.clock.seconds(), channels=chans.events,
                              queue_events=queue_events, reconnect=self.connections > 0)
        for lst, token in tokens:
            try:
                lst.resync_end(token, snap)
            except Exception:
                log.failure("AMI resync listener {lst!r} failed", lst=lst)

    def _connection_lost(self, proto: AmiClientProtocol, reason) -> None:
        if self.protocol is proto:
            self.protocol = None
        for aid, (d, timer, p) in list(self._originates.items()):
            if p is proto:
                del self._originates[aid]
                if timer.active():
                    timer.cancel()
                d.errback(OriginateInterrupted(
                    f"AMI connection lost before the OriginateResponse (ActionID {aid}): the call "
                    "may or may not have been placed; it is not retried automatically"))
        if self.connected:
            self.connected = False
            metrics.AMI_CONNECTED.set(0)
            why = reason.getErrorMessage() if hasattr(reason, "getErrorMessage") else reason
            log.warn("AMI {host}:{port}: connection lost ({why}); reconnecting",
                     host=self.host, port=self.port, why=why)
            for fn in list(self._connect_listeners):
                self._safe(fn, False)

    def _safe(self, fn, *args):
        try:
            fn(*args)
        except Exception:
            log.failure("AMI listener {fn!r} failed", fn=fn)

    # --- events -----------------------------------------------------------------------------
    def _dispatch(self, msg: AmiMessage) -> None:
        if msg.name == "OriginateResponse" and self._originates:
            entry = self._originates.pop(msg.get("ActionID"), None)
            if entry is not None:
                d, timer, _p = entry
                if timer.active():
                    timer.cancel()
                d.callback(originate_result(msg))
        for fn in self._event_listeners:
            try:
                fn(msg)
            except Exception:
                log.failure("AMI event listener failed on {event}", event=msg.name)

    # --- actions ------------------------------------------------------------------------------
    def send_action(self, action: str, headers=(), *, timeout: float | None = None):
        """Send any action on the current connection (fails fast when there is none)."""
        p = self.protocol
        if p is None or not self.connected:
            return defer.fail(AmiNotConnected(f"{action}: the AMI link is down"))
        return p.send_action(action, headers, timeout=timeout)

    def originate(self, channel: str, *, context: str, exten: str, priority: int = 1,
                  variables: dict | None = None, channel_id: str | None = None,
                  caller_id: str | None = None, timeout_ms: int = 30000) -> defer.Deferred:
        """Async Originate; Deferred[OriginateResult] from the matching OriginateResponse."""
        p = self.protocol
        if p is None or not self.connected:
            return defer.fail(AmiNotConnected(
                f"Originate {channel}: the AMI link is down; the call was not placed"))
        aid = self.id_gen()
        headers = [("Channel", channel), ("Context", context), ("Exten", exten),
                   ("Priority", str(priority)), ("Timeout", str(int(timeout_ms))),
                   ("CallerID", caller_id), ("Async", "true")]
        if channel_id:
            headers.append(("ChannelId", channel_id))
        if variables:
            headers.append(("Variable", [f"{k}={v}" for k, v in variables.items()]))
        result = defer.Deferred()
        deadline = timeout_ms / 1000.0 + self.originate_grace
        timer = self.clock.callLater(deadline, self._originate_timeout, aid, deadline)
        self._originates[aid] = (result, timer, p)
        sent = p.send_action("Originate", headers, action_id=aid, timeout=self.action_timeout)

        def refused(f):
            entry = self._originates.pop(aid, None)
            if entry is None:          # already settled (connection loss, OriginateResponse)
                return None
            if entry[1].active():
                entry[1].cancel()
            if f.check(AmiConnectionLost):
                result.errback(OriginateInterrupted(
                    f"AMI connection lost before Asterisk acknowledged the Originate "
                    f"(ActionID {aid}): the call may or may not have been placed; not retried"))
            elif f.check(AmiTimeout):
                # No Response, but the connection is alive: the OriginateResponse may still
                # come.  Keep waiting for it until the overall deadline.
                self._originates[aid] = entry
                log.warn("AMI Originate {aid}: no Response within {t} s; waiting for "
                         "OriginateResponse", aid=aid, t=self.action_timeout)
            else:
                result.errback(f)
            return None
        sent.addCallbacks(lambda _r: None, refused)
        return result

    def _originate_timeout(self, aid: str, deadline: float) -> None:
        entry = self._originates.pop(aid, None)
        if entry is not None:
            entry[0].errback(OriginateTimeout(
                f"no OriginateResponse for {aid} within {deadline:g} s"))


def originate_result(msg: AmiMessage) -> OriginateResult:
    """An OriginateResult from an OriginateResponse event."""
    try:
        reason = int(msg.get("Reason") or 0)
    except ValueError:
        reason = 0
    uniqueid = msg.get("Uniqueid")
    channel = msg.get("Channel")
    return OriginateResult(
        success=(msg.get("Response") or "").lower() == "success",
        reason=reason,
        channel=channel,
        uniqueid=None if uniqueid in (None, "", "<unknown>") else uniqueid,
        action_id=msg.get("ActionID"),
        headers=msg.as_dict(),
    )


__all__ = ["AmiLink", "ResyncSnapshot", "OriginateInterrupted", "OriginateTimeout",
           "originate_result", "AmiError", "AmiNotConnected"]
