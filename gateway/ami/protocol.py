"""The AMI client protocol (one TCP connection): actions, responses, lists, events, keepalive.

- Every action gets an ActionID from the process-wide generator; its Response is matched by
  ActionID (a Response without one goes to the oldest action still waiting: Asterisk answers a
  session's actions in order).
- List actions are recognised from the reply, not from a table of names: a Response with
  ``EventList: start`` keeps the action open, events carrying its ActionID are collected, and
  the event with ``EventList: Complete`` (or ``Cancelled``) closes it, whatever it is called.
- Every action has a deadline on the injected clock: a reply that never comes fails the action
  with ``AmiTimeout`` instead of leaving a Deferred forever.
- Keepalive: a Ping every ``ping_interval`` seconds; no Pong within ``ping_timeout`` means a
  half-open connection (a dead peer, a pulled cable, a stalled Asterisk), and the connection is
  aborted so that the link reconnects.
- Events go to ``on_event(msg)``; an exception there is logged and never stops the stream.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gateway import metrics
from gateway.ami.actionid import default_generator
from gateway.ami.message import BANNER, EVENT, RESPONSE, AmiMessage, encode_action
from gateway.ami.parser import AmiParser
from gateway.logs import debug_enabled

log = Logger()


class AmiError(Exception):
    """Base of the AMI client's errors."""


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error``."""

    def __init__(self, action: str, response: AmiMessage):
        self.action = action
        self.response = response
        super().__init__(f"{action}: {response.get('Message', 'error')}")


class AmiAuthError(AmiActionError):
    """Login refused (wrong user or secret, or a host the user may not log in from)."""


class AmiTimeout(AmiError):
    """No (complete) reply within the action's deadline."""


class AmiConnectionLost(AmiError):
    """The connection went away before the reply."""


class AmiNotConnected(AmiError):
    """No logged-in AMI connection to send on."""


@dataclass
class AmiResult:
    """The reply to an action: the Response, and for list actions the events and the closer."""
    response: AmiMessage
    events: list[AmiMessage] = field(default_factory=list)
    complete: AmiMessage | None = None

    def __getitem__(self, key: str) -> str:
        return self.response[key]

    def get(self, key: str, default=None):
        return self.response.get(key, default)


class _Pending:
    __slots__ = ("action", "action_id", "deferred", "timer", "listing", "response", "events")

    def __init__(self, action, action_id, deferred):
        self.action = action
        self.action_id = action_id
        self.deferred = deferred
        self.timer = None
        self.listing = False
        self.response = None
        self.events = []


class AmiClientProtocol(Protocol):
    """One AMI session.  Create through a factory that sets ``clock`` and ``on_event``."""

    default_timeout = 10.0

    def __init__(self, clock, *, on_event: Callable[[AmiMessage], None] | None = None,
                 id_gen=None, action_timeout: float = 10.0, name: str = "ami"):
        self.clock = clock
        self.on_event = on_event or (lambda msg: None)
        self.id_gen = id_gen or default_generator()
        self.default_timeout = action_timeout
        self.name = name
        self.parser = AmiParser(expect_banner=True, name=name)
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self.banner: defer.Deferred = defer.Deferred()
        self.version: str | None = None
        self.connected = False
        self.logged_in = False
        self.events_received = 0
        self.on_connection_lost: Callable[["AmiClientProtocol", object], None] | None = None
        self.on_connection_made: Callable[["AmiClientProtocol"], None] | None = None
        self._keepalive: LoopingCall | None = None
        self._ping_timeout = 10.0

    # --- connection -------------------------------------------------------------------------
    def connectionMade(self):
        self.connected = True
        if self.on_connection_made is not None:
            self.on_connection_made(self)

    def connectionLost(self, reason=None):
        self.connected = False
        self.logged_in = False
        self.stop_keepalive()
        pending = list(self.pending.values())
        self.pending.clear()
        for p in pending:
            if p.timer is not None and p.timer.active():
                p.timer.cancel()
            p.deferred.errback(AmiConnectionLost(
                f"AMI connection lost before the reply to {p.action} (ActionID {p.action_id})"))
        if not self.banner.called:
            self.banner.errback(AmiConnectionLost("AMI connection lost before the banner"))
        if self.on_connection_lost is not None:
            self.on_connection_lost(self, reason)

    def drop(self, why: str) -> None:
        """Abort the connection now (no FIN handshake: the peer may be gone)."""
        log.warn("{name}: dropping the connection: {why}", name=self.name, why=why)
        if self.transport is not None:
            self.transport.abortConnection()

    # --- input -------------------------------------------------------------------------------
    def dataReceived(self, data: bytes):
        msgs = self.parser.feed(data)
        if not msgs:
            return
        pending = self.pending
        on_event = self.on_event
        n_events = len(msgs)            # less what turns out not to be a streamed event
        for msg in msgs:
            if msg.kind == EVENT:
                if pending:
                    aid = msg.get("ActionID")
                    p = pending.get(aid) if aid is not None else None
                    if p is not None and p.listing:
                        n_events -= 1
                        self._list_item(p, msg)
                        continue
                try:
                    on_event(msg)
                except Exception:
                    log.failure("{name}: event handler failed on {event}", name=self.name,
                                event=msg.name)
            else:
                n_events -= 1
                kind = msg.kind
                if kind == RESPONSE:
                    self._response(msg)
                elif kind == BANNER:
                    self._banner(msg)
        if n_events:
            self.events_received += n_events
            metrics.AMI_EVENTS.inc(n_events)

    def _banner(self, msg: AmiMessage) -> None:
        line = msg["Banner"]
        self.version = line.rpartition("/")[2]
        if not self.banner.called:
            self.banner.callback(line)
        else:
            log.warn("{name}: a second banner in one connection: {line!r}", name=self.name, line=line)

    def _response(self, msg: AmiMessage) -> None:
        aid = msg.get("ActionID")
        if aid is not None:
            p = self.pending.get(aid)
        else:
            p = next((q for q in self.pending.values() if q.response is None), None)
        if p is None:
            if debug_enabled():
                log.debug("{name}: a response nobody waits for: {msg!r}", name=self.name, msg=msg)
            return
        if p.response is not None:
            log.warn("{name}: second response to {action} ({aid}) ignored: {msg!r}",
                     name=self.name, action=p.action, aid=p.action_id, msg=msg)
            return
        p.response = msg
        if (msg.get("EventList") or "").lower() == "start" and msg.name.lower() != "error":
            p.listing = True
            return
        self._finish(p)

    def _list_item(self, p: _Pending, msg: AmiMessage) -> None:
        state = (msg.get("EventList") or "").lower()
        if state in ("complete", "cancelled"):
            self._finish(p, complete=msg)
        else:
            p.events.append(msg)

    def _finish(self, p: _Pending, complete: AmiMessage | None = None) -> None:
        self.pending.pop(p.action_id, None)
        if p.timer is not None and p.timer.active():
            p.timer.cancel()
        resp = p.response
        if resp.name.lower() == "error":
            err = AmiAuthError if p.action == "Login" else AmiActionError
            p.deferred.errback(err(p.action, resp))
        elif complete is not None and complete.get("EventList", "").lower() == "cancelled":
            p.deferred.errback(AmiActionError(p.action, complete))
        else:
            p.deferred.callback(AmiResult(resp, p.events, complete))

    # --- output ------------------------------------------------------------------------------
    def send_action(self, action: str, headers=(), *, timeout: float | None = None,
                    action_id: str | None = None) -> defer.Deferred:
        """Send an action; Deferred[AmiResult], failing with AmiActionError / AmiTimeout /
        AmiConnectionLost."""
        if not self.connected or self.transport is None:
            return defer.fail(AmiNotConnected(f"{action}: not connected"))
        aid = action_id or self.id_gen()
        if aid in self.pending:
            return defer.fail(ValueError(f"ActionID {aid} already in use"))
        try:
            data = encode_action(action, headers, aid)
        except ValueError as e:
            return defer.fail(e)

        def cancel(_d):
            self.pending.pop(aid, None)
            if p.timer is not None and p.timer.active():
                p.timer.cancel()

        d = defer.Deferred(cancel)
        p = _Pending(action, aid, d)
        t = self.default_timeout if timeout is None else timeout
        if t:
            p.timer = self.clock.callLater(t, self._timed_out, aid, t)
        self.pending[aid] = p
        self.transport.write(data)
        return d

    def _timed_out(self, aid: str, t: float) -> None:
        p = self.pending.pop(aid, None)
        if p is None:
            return
        p.deferred.errback(AmiTimeout(f"{p.action}: no complete reply within {t:g} s (ActionID {aid})"))

    # --- login ------------------------------------------------------------------------------
    @defer.inlineCallbacks
    def login(self, username: str, secret: str, *, auth: str = "md5", events: str = "on",
              timeout: float | None = None):
        """Log in, with an MD5 challenge (the secret never crosses the wire) or in plain."""
        if auth == "md5":
            ch = yield self.send_action("Challenge", [("AuthType", "MD5")], timeout=timeout)
            challenge = ch.response.get("Challenge", "")
            key = hashlib.md5((challenge + secret).encode("utf-8")).hexdigest()
            headers = [("AuthType", "MD5"), ("Username", username), ("Key", key)]
        elif auth == "plain":
            headers = [("Username", username), ("Secret", secret)]
        else:
            raise ValueError(f"unknown AMI auth mode {auth!r} (md5 or plain)")
        if events is not None:
            headers.append(("Events", events))
        result = yield self.send_action("Login", headers, timeout=timeout)
        self.logged_in = True
        return result

    # --- keepalive --------------------------------------------------------------------------
    def start_keepalive(self, interval: float, timeout: float) -> None:
        self.stop_keepalive()
        self._ping_timeout = timeout
        self._keepalive = LoopingCall(self._ping)
        self._keepalive.clock = self.clock
        self._keepalive.start(interval, now=False)

    def stop_keepalive(self) -> None:
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        self._keepalive = None

    def _ping(self):
        if not self.connected:
            return
        d = self.send_action("Ping", timeout=self._ping_timeout)

        def failed(f):
            if f.check(AmiTimeout):
                self.drop(f"no Pong within {self._ping_timeout:g} s (half-open connection?)")
            elif not f.check(AmiConnectionLost, AmiNotConnected):
                log.warn("{name}: Ping failed: {err}", name=self.name, err=f.getErrorMessage())
        d.addErrback(failed)
        # LoopingCall must not wait for the Pong (nor stop on a failure).
        return None
