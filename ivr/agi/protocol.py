"""The FastAGI wire protocol, server side (Asterisk connects to us).

One connection is one channel's AGI session: Asterisk sends the agi_ environment up to a blank
line, then answers each command we send with one reply.  Rules kept here:

- one command in flight; its reply is the next *reply* line, never the unsolicited `HANGUP`
  (Asterisk can slip that line in between a command and its own reply, see the
  order-call-prompts transcript), nor a `100` provisional line;
- 510, 511 and the multi-line 520 usage text fail the command with an AgiError;
- a per-command deadline (IReactorTime): a reply that does not come means the session is out of
  step, so the command fails and the connection is closed;
- garbage is logged, kept (bounded) and skipped; a flood of it closes the connection.
"""
from __future__ import annotations

import re
from collections import deque
from typing import Callable

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from ivr.agi.errors import (AgiConnectionLost, AgiDeadChannel, AgiError, AgiInvalidCommand,
                            AgiTimeout, AgiUsageError)
from ivr.agi.reply import AgiReply, parse_reply_line
from ivr.agi.request import AgiRequest, parse_request

log = Logger()

LINE_BREAK = re.compile("[\r\n\0]")     # what may not be inside a command (it would end it early)

MAX_ENV_LINES = 200       # Asterisk sends ~22; more is not Asterisk
MAX_GARBAGE = 100         # lines of garbage before we give up on the peer
KEEP_GARBAGE = 20         # raw garbage lines kept for the record


class AgiServerProtocol(LineReceiver):
    delimiter = b"\n"           # Asterisk ends lines with a bare LF; a CR before it is stripped
    MAX_LENGTH = 16384

    def __init__(self, reactor, on_request: Callable[["AgiServerProtocol", AgiRequest], None], *,
                 env_timeout: float = 5.0, command_timeout: float = 10.0,
                 observer: Callable[[str, float], None] | None = None,
                 service_observer: Callable[[float, str], None] | None = None):
        self.reactor = reactor
        self.on_request = on_request
        self.env_timeout = env_timeout
        self.command_timeout = command_timeout
        self.observer = observer            # (verb, seconds) per completed command, for the bench
        self.service_observer = service_observer   # (seconds from a reply to our next command, the
        self._settled_at: float | None = None       # command replied to), for the bench
        self._settled_cmd = ""
        self.env: dict[str, str] = {}
        self.request: AgiRequest | None = None
        self.state = "env"                  # env -> running -> closed
        self.hung_up = False                # the unsolicited HANGUP line was seen
        self.garbage: deque[bytes] = deque(maxlen=KEEP_GARBAGE)
        self.garbage_count = 0
        self.closed = Deferred()            # fires (None) when the connection is gone
        self._hangup_listeners: list[Callable[[], None]] = []
        self._pending: Deferred | None = None
        self._pending_cmd = ""
        self._pending_t0 = 0.0
        self._pending_timer = None
        self._usage: list[str] | None = None
        self._env_timer = None

    # --- identity for logs -------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self.env.get("agi_uniqueid", "?")

    @property
    def script(self) -> str:
        return self.request.script if self.request else "?"

    # --- connection ----------------------------------------------------------------------------
    def connectionMade(self):
        self._env_timer = self.reactor.callLater(self.env_timeout, self._env_expired)

    def _env_expired(self):
        self._env_timer = None
        log.warn("FastAGI: no complete environment within {t}s from {peer}; closing",
                 t=self.env_timeout, peer=self._peer())
        self.close()

    def _peer(self) -> str:
        try:
            p = self.transport.getPeer()
            return f"{p.host}:{p.port}"
        except Exception:  # noqa: BLE001 - only for a log line
            return "?"

    def close(self) -> None:
        """Close the connection cleanly (Asterisk then carries on with the dialplan)."""
        if self.state != "closed" and self.transport is not None and not self.transport.disconnecting:
            self.transport.loseConnection()

    def connectionLost(self, reason=ConnectionDone):
        self.state = "closed"
        for timer in (self._env_timer, self._pending_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._env_timer = self._pending_timer = None
        if self._pending is not None:
            d, self._pending = self._pending, None
            d.errback(AgiConnectionLost(f"connection lost during {self._pending_cmd!r}"))
        if not self.closed.called:
            self.closed.callback(None)

    def lineLengthExceeded(self, line):
        log.warn("FastAGI call {call_id}: line over {n} bytes; closing", call_id=self.call_id,
                 n=self.MAX_LENGTH)
        self._keep_garbage(line[:200])
        self.close()

    # --- input ---------------------------------------------------------------------------------
    def lineReceived(self, line: bytes):
        if self.state == "closed":
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        text = line.decode("utf-8", "replace")
        if self.state == "env":
            self._env_line(line, text)
        else:
            self._reply_line(line, text)

    def _env_line(self, line: bytes, text: str):
        if text == "":
            if self._env_timer is not None and self._env_timer.active():
                self._env_timer.cancel()
            self._env_timer = None
            self.state = "running"
            self.request = parse_request(self.env)
            self.on_request(self, self.request)
            return
        key, sep, value = text.partition(":")
        if sep and key.startswith("agi_") and " " not in key:
            self.env[key] = value[1:] if value.startswith(" ") else value
        else:
            log.warn("FastAGI: garbage in environment from {peer}: {raw!r}", peer=self._peer(), raw=line[:200])
            self._keep_garbage(line)
        if len(self.env) + self.garbage_count > MAX_ENV_LINES:
            log.warn("FastAGI: environment too long from {peer}; closing", peer=self._peer())
            self.close()

    def _reply_line(self, line: bytes, text: str):
        parsed = parse_reply_line(text, in_usage=self._usage is not None)
        kind = parsed.kind
        if kind == "hangup":
            # Out of band: the channel is gone, but the reply to the command in flight still comes.
            if not self.hung_up:
                self.hung_up = True
                log.info("FastAGI call {call_id} ({script}): caller hung up", call_id=self.call_id,
                         script=self.script)
                for listener in self._hangup_listeners:
                    listener()
            return
        if kind == "provisional":
            return
        if kind == "usage_start":
            self._usage = [parsed.text]
            return
        if kind == "usage_body":
            if len(self._usage) < 100:
                self._usage.append(text)
            return
        if kind == "usage_end":
            usage, self._usage = self._usage, None
            self._settle(error=AgiUsageError(f"520 on {self._pending_cmd!r}", usage))
            return
        if kind == "garbage":
            log.warn("FastAGI call {call_id} ({script}): garbage reply {raw!r}", call_id=self.call_id,
                     script=self.script, raw=line[:200])
            self._keep_garbage(line)
            if self.garbage_count > MAX_GARBAGE:
                self.close()
            return
        reply = parsed.reply
        if self._pending is None:
            log.warn("FastAGI call {call_id}: reply with no command in flight: {raw!r}",
                     call_id=self.call_id, raw=line[:200])
            self._keep_garbage(line)
            return
        if reply.code == 200:
            self._settle(reply=reply)
        elif reply.code == 510:
            self._settle(error=AgiInvalidCommand(f"510 on {self._pending_cmd!r}"))
        elif reply.code == 511:
            self._settle(error=AgiDeadChannel(f"511 on {self._pending_cmd!r}"))
        else:
            self._settle(error=AgiError(f"{reply.raw} on {self._pending_cmd!r}"))

    def _keep_garbage(self, line: bytes):
        self.garbage_count += 1
        self.garbage.append(bytes(line))

    def _settle(self, reply: AgiReply | None = None, error: Exception | None = None):
        if self._pending is None:
            log.warn("FastAGI call {call_id}: unsolicited {what}", call_id=self.call_id,
                     what=error or reply)
            return
        d, self._pending = self._pending, None
        if self._pending_timer is not None and self._pending_timer.active():
            self._pending_timer.cancel()
        self._pending_timer = None
        if self.observer is not None:
            self.observer(self._pending_cmd.split(" ", 1)[0], self.reactor.seconds() - self._pending_t0)
        if self.service_observer is not None:
            self._settled_at, self._settled_cmd = self.reactor.seconds(), self._pending_cmd
        if error is not None:
            d.errback(error)
        else:
            d.callback(reply)

    # --- output --------------------------------------------------------------------------------
    def on_hangup(self, listener: Callable[[], None]) -> None:
        self._hangup_listeners.append(listener)

    def send_command(self, command: str, timeout: float | None = None) -> Deferred:
        """Send one command line; Deferred[AgiReply] for its 200 reply, or an AgiError."""
        if self.state != "running":
            return fail(AgiConnectionLost(f"session closed; not sending {command!r}"))
        if self._pending is not None:
            return fail(AgiError(f"command {command!r} sent while {self._pending_cmd!r} in flight"))
        if LINE_BREAK.search(command):
            return fail(ValueError("line break in an AGI command"))
        self._pending = d = Deferred()
        self._pending_cmd = command
        self._pending_t0 = self.reactor.seconds()
        if self._settled_at is not None:
            self.service_observer(self._pending_t0 - self._settled_at, self._settled_cmd)
            self._settled_at = None
        limit = self.command_timeout if timeout is None else timeout
        self._pending_timer = self.reactor.callLater(limit, self._command_expired, command, limit)
        self.transport.write(command.encode("utf-8") + b"\n")
        return d

    def _command_expired(self, command: str, limit: float):
        self._pending_timer = None
        log.warn("FastAGI call {call_id} ({script}): no reply to {cmd!r} within {t}s; closing",
                 call_id=self.call_id, script=self.script, cmd=command, t=limit)
        if self._pending is not None:
            d, self._pending = self._pending, None
            d.errback(AgiTimeout(f"no reply to {command!r} within {limit}s"))
        # A reply may still come, and would be taken for the next command: the session is over.
        self.close()
