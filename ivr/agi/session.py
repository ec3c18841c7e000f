"""The command API a flow uses: one method per AGI command, results as Python values.

Every method returns a Deferred, so flows are `async def` coroutines that `await` them.  A
media command cut by the caller hanging up raises ChannelHungUp; 511 raises AgiDeadChannel.
Arguments are never allowed to carry a line break (that would inject commands).

`result=-1` is not always a hang-up.  Asterisk 22 answers STREAM FILE of a file it cannot open
with `200 result=-1 endpos=0`, and GET DATA with `200 result=-1`, on a channel that is still up
and with no HANGUP line (order-call-missing-prompts transcript).  So for those two a -1 ends the
call only when the HANGUP line has been seen or the stream had started (endpos > 0); otherwise
the prompt is logged and counted as unplayable and the flow goes on: if the caller is really
gone, Asterisk says HANGUP at once and the next command gets 511.  WAIT FOR DIGIT and SAY DIGITS
play no file the gateway names (Asterisk skips missing digit files), so their -1 is a hang-up.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gateway import metrics
from ivr.agi.errors import AgiCommandFailed, AgiDeadChannel, ChannelHungUp
from ivr.agi.protocol import LINE_BREAK
from ivr.agi.reply import AgiReply
from ivr.agi.request import AgiRequest

log = Logger()

DTMF = set("0123456789*#ABCD")


_NEEDS_QUOTES = re.compile(r'[\s"\\]')     # (one pass of a compiled pattern: this runs for every command)


def quote(arg: str) -> str:
    """Quote an argument the way Asterisk's AGI argument parser reads it back."""
    if LINE_BREAK.search(arg):
        raise ValueError("line break in an AGI argument")
    if arg and not _NEEDS_QUOTES.search(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _digit(reply: AgiReply, command: str) -> str | None:
    """A DTMF digit from `result=<ASCII code>`; 0 means none; -1 means the caller hung up."""
    n = reply.result_int
    if n is None:
        raise AgiCommandFailed(f"unreadable result {reply.raw!r} on {command}")
    if n < 0:
        raise ChannelHungUp(f"{command}: result=-1")
    if n == 0:
        return None
    ch = chr(n) if n < 0x110000 else "?"
    if ch not in DTMF:
        log.warn("FastAGI: {command} returned a non-DTMF result {raw!r}; ignored", command=command,
                 raw=reply.raw)
        return None
    return ch


@dataclass(frozen=True)
class Played:
    digit: str | None        # the escape digit that interrupted the prompt, if any
    endpos: int | None
    played: bool = True      # False: Asterisk could not play it (missing file), the call goes on


@dataclass(frozen=True)
class Recorded:
    ended: str               # dtmf / timeout / hangup / writefile / randomerror / waitfor
    endpos: int              # samples written (8000 a second for wav, gsm, ulaw, alaw, sln)
    digit: str | None = None

    @property
    def seconds(self) -> float:
        return max(self.endpos, 0) / 8000.0


@dataclass(frozen=True)
class Collected:
    digits: str              # without the terminating '#'
    timed_out: bool
    played: bool = True      # False: the prompt could not be played, so no key was read


class AgiSession:
    """One channel's AGI session, over an AgiServerProtocol."""

    def __init__(self, protocol, request: AgiRequest, *, media_timeout: float = 120.0):
        self.protocol = protocol
        self.request = request
        self.reactor = protocol.reactor
        self.media_timeout = media_timeout      # a prompt may play this long before we give up

    # --- what the flow knows ---------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self.request.call_id

    @property
    def hung_up(self) -> bool:
        return self.protocol.hung_up

    @property
    def closed(self) -> bool:
        return self.protocol.state == "closed"

    def close(self) -> None:
        self.protocol.close()

    # --- commands ----------------------------------------------------------------------------------
    def command(self, line: str, timeout: float | None = None) -> Deferred:
        """Deferred[AgiReply], to await (not a coroutine: one frame less on every command)."""
        return self.protocol.send_command(line, timeout)

    async def answer(self) -> None:
        r = await self.command("ANSWER")
        if r.result_int != 0:
            raise ChannelHungUp(f"ANSWER: {r.raw}")

    async def get_variable(self, name: str) -> str | None:
        r = await self.command(f"GET VARIABLE {quote(name)}")
        return r.data if r.result == "1" else None

    async def get_full_variable(self, expression: str) -> str | None:
        r = await self.command(f"GET FULL VARIABLE {quote(expression)}")
        return r.data if r.result == "1" else None

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f"SET VARIABLE {quote(name)} {quote(str(value))}")

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command(f"VERBOSE {quote(message)} {int(level)}")

    async def stream_file(self, name: str, escape: str = "") -> Played:
        cmd = f'STREAM FILE {quote(name)} "{_escape(escape)}"'
        r = await self.command(cmd, self.media_timeout)
        if r.result == "-1" and not (r.endpos or 0) > 0:
            self._unplayable("STREAM FILE", name)
            return Played(None, r.endpos, played=False)
        return Played(_digit(r, "STREAM FILE"), r.endpos)

    async def say_digits(self, digits: str, escape: str = "") -> str | None:
        if not digits or not all(c in DTMF for c in digits):
            raise ValueError(f"not digits: {digits!r}")
        r = await self.command(f'SAY DIGITS {digits} "{_escape(escape)}"', self.media_timeout)
        return _digit(r, "SAY DIGITS")

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> Collected:
        cmd = f"GET DATA {quote(prompt)} {int(timeout_ms)} {int(max_digits)}"
        r = await self.command(cmd, self.media_timeout + timeout_ms / 1000.0 * (max_digits + 1))
        if r.result == "-1":
            self._unplayable("GET DATA", prompt)
            return Collected("", False, played=False)
        digits = r.result
        if not all(c in DTMF for c in digits):
            log.warn("FastAGI call {call_id}: GET DATA returned {raw!r}; taken as nothing",
                     call_id=self.call_id, raw=r.raw)
            digits = ""
        return Collected(digits, r.data == "timeout")

    async def record_file(self, path: str, fmt: str, escape: str, timeout_ms: int, *, beep: bool = True,
                          silence_s: int = 0) -> Recorded:
        """RECORD FILE: Asterisk records the caller into `path`.`fmt` until a key of `escape`, the
        timeout, `silence_s` seconds of silence, or a hang-up.  Its answers (Asterisk 22):
        `200 result=35 (dtmf) endpos=N`, `200 result=0 (timeout) endpos=N`,
        `200 result=-1 (hangup) endpos=N`, `200 result=-1 (writefile)` (the file could not be made),
        `200 result=-1 (randomerror) endpos=0` (the beep could not be played)."""
        cmd = f'RECORD FILE {quote(path)} {fmt} "{_escape(escape)}" {int(timeout_ms)}'
        if beep:
            cmd += " BEEP"
        if silence_s:
            cmd += f" s={int(silence_s)}"
        r = await self.command(cmd, self.media_timeout + max(timeout_ms, 0) / 1000.0)
        how = r.data or ("hangup" if r.result == "-1" else "timeout")
        digit = chr(r.result_int) if how == "dtmf" and (r.result_int or 0) > 0 else None
        return Recorded(how, r.endpos or 0, digit)

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        if timeout_ms < 0:
            raise ValueError("an endless WAIT FOR DIGIT would hold the channel")
        r = await self.command(f"WAIT FOR DIGIT {int(timeout_ms)}",
                               self.protocol.command_timeout + timeout_ms / 1000.0)
        return _digit(r, "WAIT FOR DIGIT")

    async def channel_status(self) -> int:
        """Asterisk's channel state (6 = up, 4 = ringing, ...); 511 raises AgiDeadChannel."""
        r = await self.command("CHANNEL STATUS")
        if r.result_int is None:
            raise AgiCommandFailed(f"unreadable result {r.raw!r} on CHANNEL STATUS")
        return r.result_int

    def _unplayable(self, command: str, prompt: str) -> None:
        """A media command answered result=-1 without playing: the caller gone, or the file."""
        if self.hung_up:
            raise ChannelHungUp(f"{command}: result=-1 after HANGUP")
        script = self.request.script
        log.warn("FastAGI call {call_id} ({script}): {command} could not play prompt {prompt!r} "
                 "(result=-1, no HANGUP: the sound file is missing or unreadable on the Asterisk "
                 "host); the call goes on", call_id=self.call_id, script=script, command=command,
                 prompt=prompt)
        # Absolute paths are rendered order texts (one per order): one label for all of them.
        label = "order_text" if prompt.startswith("/") else prompt[:60]
        metrics.AGI_PROMPTS_UNPLAYABLE.labels(script, label).inc()

    async def hangup(self) -> None:
        """Hang the channel up; a channel already gone (511) is not an error here."""
        try:
            await self.command("HANGUP")
        except AgiDeadChannel:
            pass


def _escape(escape: str) -> str:
    if not all(c in DTMF for c in escape):
        raise ValueError(f"escape digits {escape!r}")
    return escape
