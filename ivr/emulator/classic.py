"""The emulator for classic AGI: runs an AGI program as Asterisk would (a child process on
stdin/stdout) and answers its commands with an EmulatedChannel.

A classic AGI is not told of a hang-up by the `HANGUP` line (that is FastAGI's): res_agi sends
the child SIGHUP instead, and commands needing the channel get 511."""
from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol

from ivr.emulator.caller import ScriptedCaller
from ivr.emulator.channel import EmulatedChannel
from ivr.emulator.client import CallRecord
from ivr.emulator.environment import agi_environment, environment_bytes
from ivr.emulator.sounds import SoundLibrary


class _AsteriskSide(ProcessProtocol):
    def __init__(self, env: bytes, channel: EmulatedChannel, record: CallRecord):
        self.env, self.channel, self.record = env, channel, record
        self.buf = b""
        self.stderr = b""
        self.done = Deferred()

    def connectionMade(self):
        self.transport.write(self.env)

    def outReceived(self, data: bytes):
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace").rstrip("\r")
            self.record.commands.append(text)
            reply = self.channel.handle(text)
            lines = [ln for ln in reply.lines if ln != "HANGUP"]
            if len(lines) != len(reply.lines):
                self._sighup()
            self.record.replies.extend(lines)
            self.transport.write("".join(f"{ln}\n" for ln in lines).encode())

    def _sighup(self):
        try:
            self.transport.signalProcess("HUP")
        except ProcessExitedAlready:
            pass

    def errReceived(self, data: bytes):
        self.stderr = (self.stderr + data)[-8192:]

    def processEnded(self, reason):
        self.record.closed_by = "exit"
        self.record.exit_code = getattr(reason.value, "exitCode", None)
        self.done.callback(self.record)


def run_classic_agi(reactor, argv: list[str], *, caller: ScriptedCaller | None = None,
                    variables: dict | None = None, callerid: str = "unknown",
                    uniqueid: str | None = None, env: dict | None = None,
                    sounds: SoundLibrary | None = None) -> Deferred:
    """Deferred[CallRecord] when the program exits.  argv[0] is the executable; sounds: the
    prompts this Asterisk has (default: core sounds and the shipped prompts)."""
    channel = EmulatedChannel(caller=caller or ScriptedCaller(), variables=dict(variables or {}),
                              callerid=callerid, sounds=sounds or SoundLibrary.installed())
    pairs = [(k, v) for k, v in agi_environment(argv[-1], callerid=callerid, uniqueid=uniqueid)
             if k not in ("agi_network", "agi_network_script")]
    pairs = [(k, argv[0] if k == "agi_request" else v) for k, v in pairs]
    record = CallRecord(script=argv[-1], channel=channel)
    proto = _AsteriskSide(environment_bytes(pairs), channel, record)
    reactor.spawnProcess(proto, argv[0], argv, env=env if env is not None else dict(os.environ),
                         path=os.getcwd())
    return proto.done
