"""The FastAGI server: accepts Asterisk's connections and runs the flow named by the script.

    factory = FastAgiFactory(reactor, {"order": order_flow, "hotline": hotline_flow, ...})
    reactor.listenTCP(4573, factory, interface="127.0.0.1")

A flow is a callable taking an AgiSession and returning an awaitable (an `async def`) or a
Deferred.  A flow may carry a `deadline` attribute (seconds): past it the connection is closed,
so that Asterisk carries on with the dialplan (for the hotline: to the call-takers' queue).
However a flow ends (normally, by exception, by hang-up), the connection is closed once.
With `peers` (an ivr.peers.PeerGate), a peer it does not admit is disconnected before anything
is read or sent.
"""
from __future__ import annotations

import inspect
from typing import Callable, Mapping

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from gateway import metrics
from ivr.agi.errors import AgiConnectionLost, AgiError, ChannelHungUp, AgiDeadChannel
from ivr.agi.protocol import AgiServerProtocol
from ivr.agi.request import AgiRequest
from ivr.agi.session import AgiSession

log = Logger()

# Hang-ups are how calls end; they are not errors of the gateway.
_CALL_ENDED = (ChannelHungUp, AgiDeadChannel, AgiConnectionLost)


class FastAgiFactory(Factory):
    def __init__(self, reactor, flows: Mapping[str, Callable], *, env_timeout: float = 5.0,
                 command_timeout: float = 10.0, media_timeout: float = 120.0,
                 observer: Callable[[str, float], None] | None = None,
                 service_observer: Callable[[float, str], None] | None = None, peers=None):
        self.reactor = reactor
        self.peers = peers                          # PeerGate: who may connect (None: anyone)
        self.flows = dict(flows)
        self.env_timeout = env_timeout
        self.command_timeout = command_timeout
        self.media_timeout = media_timeout
        self.observer = observer                    # (verb, round-trip seconds) per command
        self.service_observer = service_observer    # (the gateway's own time from a reply to its next
                                                    # command, the command replied to)
        self.active: set[AgiServerProtocol] = set()

    def buildProtocol(self, addr):
        if self.peers is not None and not self.peers.admit(addr):
            return None                 # Twisted closes the socket: no command ever reaches it
        p = AgiServerProtocol(self.reactor, self._start, env_timeout=self.env_timeout,
                              command_timeout=self.command_timeout, observer=self.observer,
                              service_observer=self.service_observer)
        p.factory = self
        return p

    def _start(self, protocol: AgiServerProtocol, request: AgiRequest) -> None:
        flow = self.flows.get(request.script)
        label = request.script if flow is not None else "unknown"
        metrics.AGI_SESSIONS.labels(label).inc()
        if flow is None:
            log.warn("FastAGI call {call_id}: no flow for script {script!r}; closing so the dialplan "
                     "carries on", call_id=request.call_id, script=request.script[:40])
            metrics.AGI_ERRORS.labels(label).inc()
            protocol.close()
            return
        metrics.AGI_ACTIVE.inc()
        self.active.add(protocol)
        session = AgiSession(protocol, request, media_timeout=self.media_timeout)
        deadline_timer = None
        deadline = getattr(flow, "deadline", None)
        if deadline:
            def expired():
                log.warn("FastAGI call {call_id} ({script}): flow past its {t}s deadline; closing",
                         call_id=request.call_id, script=label, t=deadline)
                protocol.close()
                d.cancel()        # a flow stuck on something else (a database, the engine) ends too
            deadline_timer = self.reactor.callLater(deadline, expired)

        def run():
            result = flow(session)
            if isinstance(result, Deferred) or not inspect.isawaitable(result):
                return result
            return ensureDeferred(result)

        d = maybeDeferred(run)

        def failed(f):
            if f.check(*_CALL_ENDED):
                log.info("FastAGI call {call_id} ({script}) ended by the call: {why}",
                         call_id=request.call_id, script=label, why=f.getErrorMessage())
                return None
            metrics.AGI_ERRORS.labels(label).inc()
            if f.check(AgiError):
                log.warn("FastAGI call {call_id} ({script}) failed: {why}", call_id=request.call_id,
                         script=label, why=f.getErrorMessage())
            else:
                log.failure("FastAGI call {call_id} ({script}): flow error", f, call_id=request.call_id,
                            script=label)
            return None

        def done(_):
            if deadline_timer is not None and deadline_timer.active():
                deadline_timer.cancel()
            metrics.AGI_ACTIVE.dec()
            self.active.discard(protocol)
            protocol.close()
            return None

        d.addErrback(failed).addBoth(done)
