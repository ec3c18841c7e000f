"""The emulator over real TCP: connects to a FastAGI server as Asterisk would."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from ivr.emulator.caller import ScriptedCaller
from ivr.emulator.channel import EmulatedChannel, Reply
from ivr.emulator.environment import agi_environment, environment_bytes
from ivr.emulator.sounds import SoundLibrary

log = Logger()


@dataclass
class CallRecord:
    script: str
    commands: list[str] = field(default_factory=list)     # what the gateway sent
    replies: list[str] = field(default_factory=list)      # what we (Asterisk) sent back
    closed_by: str = ""        # gateway / idle (we gave up waiting) / too_many_commands / error
    channel: EmulatedChannel | None = None

    @property
    def played(self) -> list[str]:
        return self.channel.played if self.channel else []

    @property
    def variables(self) -> dict[str, str]:
        return self.channel.variables if self.channel else {}


class AgiClientProtocol(LineReceiver):
    """Plays Asterisk: sends the environment, answers each command through `respond`."""
    delimiter = b"\n"

    def __init__(self, reactor, env: bytes, respond: Callable[[str], Reply], record: CallRecord, *,
                 idle_timeout: float = 30.0, max_commands: int = 500,
                 on_turnaround: Callable[[float], None] | None = None):
        self.reactor = reactor
        self.on_turnaround = on_turnaround    # seconds from our reply to the gateway's next command
        self._replied_at: float | None = None
        self.env = env
        self.respond = respond
        self.record = record
        self.idle_timeout = idle_timeout
        self.max_commands = max_commands
        self.done = Deferred()
        self._idle = None
        self._timers = []

    def connectionMade(self):
        self.transport.write(self.env)
        self._replied_at = time.perf_counter()     # the first turnaround: accept to first command
        self._arm_idle()

    def _arm_idle(self):
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.idle_timeout)
        else:
            self._idle = self.reactor.callLater(self.idle_timeout, self._give_up, "idle")

    def _give_up(self, why):
        self._idle = None
        self.record.closed_by = self.record.closed_by or why
        self.transport.loseConnection()

    def lineReceived(self, line: bytes):
        text = line.decode("utf-8", "replace").rstrip("\r")
        if self.on_turnaround is not None and self._replied_at is not None:
            self.on_turnaround(time.perf_counter() - self._replied_at)
            self._replied_at = None
        self.record.commands.append(text)
        if len(self.record.commands) > self.max_commands:
            self._give_up("too_many_commands")
            return
        reply = self.respond(text)
        self._arm_idle()
        if reply.delay > 0:
            self._timers.append(self.reactor.callLater(reply.delay, self._send, reply.lines))
        else:
            self._send(reply.lines)

    def _send(self, lines):
        if not self.transport or self.transport.disconnecting:
            return
        self.record.replies.extend(lines)
        self.transport.write("".join(f"{ln}\n" for ln in lines).encode())
        self._replied_at = time.perf_counter()

    def connectionLost(self, reason=ConnectionDone):
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        for t in self._timers:
            if t.active():
                t.cancel()
        self.record.closed_by = self.record.closed_by or "gateway"
        if not self.done.called:
            self.done.callback(self.record)


async def place_call(reactor, host: str, port: int, script: str, *, caller: ScriptedCaller | None = None,
                     variables: dict[str, str] | None = None, callerid: str = "unknown",
                     env: dict[str, str] | None = None, idle_timeout: float = 30.0,
                     pace: Callable[[str], float] | None = None,
                     on_turnaround: Callable[[float], None] | None = None,
                     started: Callable[[AgiClientProtocol], None] | None = None,
                     sounds: SoundLibrary | None = None, clock=None) -> CallRecord:
    """One emulated call into the gateway; returns when the gateway closes the session.

    pace(command) -> extra seconds before the reply (how long a prompt plays, say);
    on_turnaround(seconds) is told how long the gateway took from each reply to its next command;
    started(protocol) is given the protocol before it connects;
    sounds: the prompts this Asterisk has (default: core sounds and the shipped prompts);
    clock: what times the replies and the idle limit (default: the reactor).
    """
    channel = EmulatedChannel(caller=caller or ScriptedCaller(), variables=dict(variables or {}),
                              callerid=callerid, sounds=sounds or SoundLibrary.installed())
    pairs = agi_environment(script, host=host, port=port, callerid=callerid)
    if env:
        pairs = [(k, env.get(k, v)) for k, v in pairs] + [(k, v) for k, v in env.items()
                                                          if k not in dict(pairs)]
    record = CallRecord(script=script, channel=channel)
    respond = channel.handle
    if pace is not None:
        def respond(line):
            reply = channel.handle(line)
            reply.delay += pace(line)
            return reply
    proto = AgiClientProtocol(clock or reactor, environment_bytes(pairs), respond, record,
                              idle_timeout=idle_timeout, on_turnaround=on_turnaround)
    if started is not None:       # the caller may abort the session (the PBX stopping)
        started(proto)
    await connectProtocol(TCP4ClientEndpoint(reactor, host, port, timeout=5), proto)
    return await proto.done
