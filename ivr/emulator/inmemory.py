"""The emulator without a network: an AgiServerProtocol on a StringTransport, answered by an
EmulatedChannel, driven by a task.Clock.  Scripted-flow tests and drills run on it in microseconds."""
from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ivr.emulator.channel import EmulatedChannel
from ivr.emulator.environment import environment_bytes


class InMemoryCall:
    def __init__(self, factory, env: list[tuple[str, str]] | bytes, channel: EmulatedChannel, clock, *,
                 chunk: int = 0):
        """channel: an EmulatedChannel, or any callable line -> Reply (a TranscriptResponder).
        chunk > 0 feeds Asterisk's bytes in pieces of that size (parsers must not care)."""
        self.channel = channel
        self.respond = channel.handle if hasattr(channel, "handle") else channel
        self.chunk = chunk
        self.clock = clock
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.lost = False
        self._buf = b""
        self._feed(env if isinstance(env, bytes) else environment_bytes(env))
        self.pump()

    def pump(self) -> None:
        """Answer every command written so far; notice when the gateway closed."""
        while True:
            out = self.transport.value()
            if not out:
                break
            self.transport.clear()
            self._buf += out
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                reply = self.respond(line.decode("utf-8", "replace"))
                if reply.delay > 0:
                    self.clock.callLater(reply.delay, self._deliver_later, reply.lines)
                else:
                    self._deliver(reply.lines)
        if self.transport.disconnecting and not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))

    def _deliver(self, lines):
        if not self.lost:
            self._feed("".join(f"{ln}\n" for ln in lines).encode())

    def _feed(self, data: bytes):
        step = self.chunk or len(data) or 1
        for i in range(0, len(data), step):
            if self.lost:
                return
            self.protocol.dataReceived(data[i:i + step])

    def _deliver_later(self, lines):
        self._deliver(lines)
        self.pump()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.pump()

    def hang_up_socket(self) -> None:
        """Asterisk drops the connection (channel destroyed, Asterisk restarted)."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def closed_by_gateway(self) -> bool:
        return self.transport.disconnecting
