"""One AT session on one modem port: a Twisted protocol, one command in flight.

What real modems do, and what this layer therefore handles (TS 27.005 / 27.007):
- unsolicited result codes (+CMTI, +CDS with its PDU line, RING, ^RSSI, RDY, ...) arrive at any
  time, including between the information lines of another command's response; they are
  dispatched at once and never taken for (or lost in) that response.  A "+", "^" or "*" line
  that is not the answer of the command in flight (+CTZV, ^NWTIME, +QUSIM, *PSUTTZ: makes send
  many we cannot list) is unsolicited too; the PDU after +CDS:/+CMT: is the next line shaped
  like one, not merely the next line;
- the SMS prompt is "> " with no line end;
- a response can come after our timeout: a late "+CMGS: <mr>" is still reported;
- after a reboot the modem echoes commands again: echoes are recognised and reported;
- bytes are untrusted: a line that is not ASCII is logged and handed on raw, and the session
  carries on (python-gsmmodem-new's serial layer dies on it).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet import defer, protocol
from twisted.logger import Logger

from sms.atparse import parse_cmgs, pdu_shape

log = Logger()

CTRL_Z = b"\x1a"
ESC = b"\x1b"
MAX_LINE = 4096
# lines an unsolicited +CDS:/+CMT: waits for its PDU while other unsolicited lines come between
MAX_PDU_WAIT = 3

FINAL_OK = {"OK"}
FINAL_ERRORS = {"ERROR", "NO CARRIER", "NO DIALTONE", "BUSY", "NO ANSWER", "COMMAND NOT SUPPORT",
                "TOO MANY PARAMETERS"}

# Unsolicited result codes.  "+CDS:" and "+CMT:" are followed by a PDU line (PDU mode).
URC_WITH_PDU = ("+CDS:", "+CMT:")
URC_PREFIXES = ("+CMTI:", "+CDSI:", "+CBM:", "RING", "+CRING:", "+CLIP:", "^RSSI:", "^HCSQ:",
                "^BOOT:", "^MODE:", "^SRVST:", "^SIMST:", "^SYSSTART", "RDY", "+CREG:", "+CGREG:",
                "+CEREG:", "+CIEV:", "+PBREADY", "^CEND:", "^ORIG:", "^CONF:", "^CONN:", "+STIN:",
                "+CUSD:", "+CPIN:", "^STIN:", "+QIND:", "^NDISSTAT:", "^DSFLOWRPT:", "SMS READY",
                "CALL READY", "+CFUN:", "^SMMEMFULL:", "+CSQN:")


class AtError(Exception):
    """The modem answered with a final error."""

    def __init__(self, command: str, final: str, lines: list[str] | None = None):
        super().__init__(f"{command!s} → {final}")
        self.command = command
        self.final = final
        self.lines = lines or []


class CmsError(AtError):
    def __init__(self, command: str, code: int, final: str):
        super().__init__(command, final)
        self.code = code


class CmeError(AtError):
    def __init__(self, command: str, code: int, final: str):
        super().__init__(command, final)
        self.code = code


class AtTimeout(Exception):
    """No final result in time.  `pdu_sent`: for AT+CMGS, the PDU had already been written,
    so the network may have the segment: its outcome is unknown."""

    def __init__(self, command: str, pdu_sent: bool = False, phase: str = "response"):
        super().__init__(f"{command} timed out waiting for {phase}")
        self.command = command
        self.pdu_sent = pdu_sent
        self.phase = phase


class PortLost(Exception):
    """The port closed while the command was in flight."""


class SubmitNotConfirmed(Exception):
    """AT+CMGS ended with OK but no +CMGS: <mr> (a stray OK?): outcome unknown."""


@dataclass
class _Command:
    text: str                      # without the trailing CR
    timeout: float
    deferred: defer.Deferred
    prefix: str | None             # information lines starting with this belong to the response
    secret: bool = False
    pdu: str | None = None         # AT+CMGS: hex PDU sent after the prompt
    prompt_timeout: float = 0.0
    lines: list[str] = field(default_factory=list)
    pdu_sent: bool = False
    timer: object = None
    late_reported: bool = False


def _response_prefix(cmd: str) -> str | None:
    c = cmd.upper()
    if not c.startswith("AT+") and not c.startswith("AT^"):
        return None
    name = c[2:]
    for sep in ("=", "?"):
        name = name.split(sep)[0]
    return name + ":"


class ATSession(protocol.Protocol):
    """Serialises commands on one port; dispatches unsolicited lines.

    Callbacks (all optional): on_unsolicited(line, pdu_or_None), on_garbage(raw_bytes),
    on_late_submit(mr), on_echo(line), on_lost(reason).
    """

    def __init__(self, reactor, name: str, *, on_unsolicited: Callable | None = None,
                 on_garbage: Callable | None = None, on_late_submit: Callable | None = None,
                 on_echo: Callable | None = None, on_lost: Callable | None = None):
        self.reactor = reactor
        self.name = name
        self.on_unsolicited = on_unsolicited or (lambda line, pdu: None)
        self.on_garbage = on_garbage or (lambda raw: None)
        self.on_late_submit = on_late_submit or (lambda mr: None)
        self.on_echo = on_echo or (lambda line: None)
        self.on_lost = on_lost or (lambda reason: None)
        self._buf = b""
        self._queue: deque[_Command] = deque()
        self._current: _Command | None = None
        self._awaiting_prompt = False
        self._pending_urc: str | None = None    # +CDS:/+CMT: waiting for its PDU line
        self._pending_skips = 0                 # lines that came in between
        self._zombie: _Command | None = None    # timed-out command whose answer may still come
        self.connected = False
        self.garbage_count = 0
        self.last_rx = None

    # --- transport side -----------------------------------------------------------------------
    def connectionMade(self):
        self.connected = True

    def connectionLost(self, reason=protocol.connectionDone):
        self.connected = False
        err = PortLost(f"{self.name}: port closed")
        cur, self._current = self._current, None
        pending = list(self._queue)
        self._queue.clear()
        if cur is not None:
            self._cancel_timer(cur)
            if cur.pdu is not None and cur.pdu_sent:
                cur.deferred.errback(AtTimeout(cur.text, pdu_sent=True, phase="response (port lost)"))
            else:
                cur.deferred.errback(err)
        for c in pending:
            c.deferred.errback(err)
        self.on_lost(reason)

    def dataReceived(self, data: bytes):
        self.last_rx = self.reactor.seconds()
        self._buf += data
        while self._buf:
            if self._awaiting_prompt:
                stripped = self._buf.lstrip(b"\r\n")
                if stripped.startswith(b">"):
                    self._buf = stripped[1:]
                    if self._buf.startswith(b" "):
                        self._buf = self._buf[1:]
                    self._prompt()
                    continue
            cr, lf = self._buf.find(b"\r"), self._buf.find(b"\n")
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                if len(self._buf) > MAX_LINE:
                    raw, self._buf = self._buf, b""
                    self._garbage(raw, "line too long")
                break
            i = min(ends)
            raw, self._buf = self._buf[:i], self._buf[i + 1:]
            if raw.strip():
                self._raw_line(raw)

    # --- commands -----------------------------------------------------------------------------
    def command(self, text: str, timeout: float = 5.0, *, secret: bool = False,
                prefix: str | None = None) -> defer.Deferred:
        """Send one command; Deferred[list of information lines] or AtError/AtTimeout/PortLost."""
        d = defer.Deferred()
        self._queue.append(_Command(text=text, timeout=timeout, deferred=d,
                                    prefix=prefix or _response_prefix(text), secret=secret))
        self._next()
        return d

    def submit(self, tpdu_length: int, pdu_hex: str, *, prompt_timeout: float = 5.0,
               timeout: float = 60.0) -> defer.Deferred:
        """AT+CMGS in PDU mode; Deferred[mr].  A timeout after the PDU was written fails with
        AtTimeout(pdu_sent=True): the caller must treat the segment's outcome as unknown."""
        d = defer.Deferred()
        self._queue.append(_Command(text=f"AT+CMGS={tpdu_length}", timeout=timeout, deferred=d,
                                    prefix="+CMGS:", pdu=pdu_hex, prompt_timeout=prompt_timeout))
        self._next()
        return d

    def quiet(self, seconds: float = 0.3, max_wait: float = 5.0) -> defer.Deferred:
        """Fires once nothing has arrived for `seconds` (stale answers drained), or after max_wait."""
        d = defer.Deferred()
        start = self.reactor.seconds()

        def check():
            now = self.reactor.seconds()
            if now - (self.last_rx if self.last_rx is not None else start - seconds) >= seconds \
                    or now - start >= max_wait:
                d.callback(None)
            else:
                self.reactor.callLater(seconds / 2, check)
        self.reactor.callLater(seconds, check)
        return d

    @property
    def busy(self) -> bool:
        return self._current is not None or bool(self._queue)

    def _next(self):
        if self._current is not None or not self._queue or not self.connected:
            return
        cmd = self._current = self._queue.popleft()
        self._zombie = None if (self._zombie and self._zombie.pdu is None) else self._zombie
        if cmd.pdu is not None:
            self._awaiting_prompt = True
            cmd.timer = self.reactor.callLater(cmd.prompt_timeout, self._timed_out, cmd, "prompt")
        else:
            cmd.timer = self.reactor.callLater(cmd.timeout, self._timed_out, cmd, "response")
        self.transport.write(cmd.text.encode("ascii") + b"\r")

    def _prompt(self):
        cmd = self._current
        self._awaiting_prompt = False
        if cmd is None or cmd.pdu is None:
            log.warn("{modem}: stray SMS prompt", modem=self.name)
            return
        self._cancel_timer(cmd)
        cmd.pdu_sent = True     # from here on, the network may get the segment
        self.transport.write(cmd.pdu.encode("ascii") + CTRL_Z)
        cmd.timer = self.reactor.callLater(cmd.timeout, self._timed_out, cmd, "response")

    def _timed_out(self, cmd: _Command, phase: str):
        cmd.timer = None
        if self._current is not cmd:
            return
        self._current = None
        if self._awaiting_prompt:
            # cancel the half-typed command so that the PDU we never sent is not expected
            self._awaiting_prompt = False
            self.transport.write(ESC)
        self._zombie = cmd
        log.warn("{modem}: {command} timed out waiting for {phase}", modem=self.name,
                 command=self._shown(cmd), phase=phase)
        cmd.deferred.errback(AtTimeout(self._shown(cmd), pdu_sent=cmd.pdu_sent, phase=phase))
        self._next()

    def _finish(self, cmd: _Command, result=None, error: Exception | None = None):
        self._cancel_timer(cmd)
        self._current = None
        self._awaiting_prompt = False
        if error is not None:
            cmd.deferred.errback(error)
        else:
            cmd.deferred.callback(result)
        self._next()

    @staticmethod
    def _cancel_timer(cmd: _Command):
        if cmd.timer is not None and cmd.timer.active():
            cmd.timer.cancel()
        cmd.timer = None

    @staticmethod
    def _shown(cmd: _Command) -> str:
        return "AT+CPIN=****" if cmd.secret else cmd.text

    # --- lines --------------------------------------------------------------------------------
    def _garbage(self, raw: bytes, why: str):
        self.garbage_count += 1
        log.warn("{modem}: garbage from modem ({why}): {raw!r}", modem=self.name, why=why, raw=raw[:200])
        try:
            self.on_garbage(raw)
        except Exception:  # noqa: BLE001 - a sink failure must not kill the reader
            log.failure("{modem}: garbage sink failed", modem=self.name)

    def _raw_line(self, raw: bytes):
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            self._garbage(raw, "not ASCII")
            return
        if any(ord(c) < 32 and c not in "\t" for c in line):
            # control characters (e.g. a leftover ^Z) around an otherwise good line
            cleaned = "".join(c for c in line if ord(c) >= 32 or c == "\t").strip()
            if not cleaned:
                return
            line = cleaned
        try:
            self._line(line)
        except Exception:  # noqa: BLE001 - never let one line stop the reader
            log.failure("{modem}: error handling line {line!r}", modem=self.name, line=line)

    def _line(self, line: str):
        if self._pending_urc is not None:
            urc = self._pending_urc
            if pdu_shape(line, _announced_length(urc)):
                self._pending_urc, self._pending_skips = None, 0
                self._dispatch_urc(urc, line)
                return
            self._pending_skips += 1
            if self._pending_skips > MAX_PDU_WAIT:
                self._pending_urc, self._pending_skips = None, 0
                log.warn("{modem}: {urc} came without its PDU", modem=self.name, urc=urc)
                self._dispatch_urc(urc, "")       # kept as a garbage record, not silently dropped
            # otherwise: an unsolicited line between the header and its PDU, handled as any other
        upper = line.upper()
        cmd = self._current
        # echo (after a reboot the modem echoes again)
        if cmd is not None and (upper == cmd.text.upper() or (cmd.pdu and upper.rstrip() == cmd.pdu.upper())):
            self.on_echo(self._shown(cmd))       # an echoed AT+CPIN=<pin> must not reach a log
            return
        if upper.startswith("AT") and (cmd is None or not upper.startswith(cmd.prefix or "\0")):
            self.on_echo("AT+CPIN=****" if upper.startswith("AT+CPIN=") else line)
            return
        # a response line of the command in flight beats the URC table (+CREG, +CPIN are both)
        if cmd is not None and cmd.prefix and upper.startswith(cmd.prefix):
            if cmd.pdu is not None and not cmd.pdu_sent and self._zombie is not None:
                self._late_submit(line)      # a late answer of the previous, timed-out AT+CMGS
                return
            cmd.lines.append(line)
            return
        if upper.startswith(URC_WITH_PDU):
            if self._pending_urc is not None:
                self._dispatch_urc(self._pending_urc, "")
            self._pending_urc, self._pending_skips = line, 0
            return
        if upper.startswith(URC_PREFIXES):
            self._dispatch_urc(line, None)
            return
        if upper.startswith("+CMGS:") and self._zombie is not None and self._zombie.pdu is not None:
            self._late_submit(line)
            return
        if (cmd is not None and cmd.pdu is not None and not cmd.pdu_sent and self._zombie is not None
                and (upper in FINAL_OK or upper.startswith("+CMGS:"))):
            # before our prompt this cannot be our answer: it is the timed-out command's
            if upper.startswith("+CMGS:"):
                self._late_submit(line)
            else:
                self._zombie = None
            return
        if cmd is None:
            if self._zombie is not None and (upper in FINAL_OK or upper in FINAL_ERRORS or
                                             upper.startswith(("+CMS ERROR", "+CME ERROR"))):
                log.info("{modem}: late answer to {command}: {line}", modem=self.name,
                         command=self._shown(self._zombie), line=line)
                self._zombie = None
                return
            self._dispatch_urc(line, None)     # nothing asked: unsolicited (DST: 0, Call Ready, ...)
            return
        # final results
        if upper in FINAL_OK:
            if cmd.pdu is not None:
                mr = None
                for ln in cmd.lines:
                    if ln.upper().startswith("+CMGS:"):
                        mr = parse_cmgs(ln)
                if mr is None:
                    self._finish(cmd, error=SubmitNotConfirmed(f"{cmd.text}: OK without +CMGS"))
                else:
                    self._zombie = None
                    self._finish(cmd, result=mr)
            else:
                self._finish(cmd, result=cmd.lines)
            return
        if upper.startswith("+CMS ERROR"):
            self._finish(cmd, error=CmsError(self._shown(cmd), _code(line), line))
            return
        if upper.startswith("+CME ERROR"):
            self._finish(cmd, error=CmeError(self._shown(cmd), _code(line), line))
            return
        if upper in FINAL_ERRORS:
            self._finish(cmd, error=AtError(self._shown(cmd), line, cmd.lines))
            return
        if (cmd.prefix and upper[:1] in "+^*") or not _bare_lines_expected(cmd):
            self._dispatch_urc(line, None)      # not this command's answer: unsolicited
            return
        cmd.lines.append(line)       # information line (e.g. the PDU after +CMGR:)

    def _late_submit(self, line: str):
        # the zombie stays until its final result, so that its OK is not taken for ours
        mr = parse_cmgs(line)
        zombie = self._zombie
        if zombie is None or zombie.late_reported:
            log.info("{modem}: stray {line}", modem=self.name, line=line)
            return
        zombie.late_reported = True
        log.info("{modem}: late {line} for timed-out {command}", modem=self.name, line=line,
                 command=self._shown(zombie))
        if mr is not None:
            self.on_late_submit(mr)

    def _dispatch_urc(self, line: str, pdu: str | None):
        try:
            self.on_unsolicited(line, pdu)
        except Exception:  # noqa: BLE001
            log.failure("{modem}: unsolicited handler failed on {line!r}", modem=self.name, line=line)


# Commands whose information lines may come without the prefix (the PDU after +CMGR:/+CMGL:, a
# maker's name); in the answer of any other command a line without its prefix is unsolicited.
BARE_INFO = ("+CMGR:", "+CMGL:", "+CGMI:", "+CGMM:", "+CGMR:", "+CGSN:", "+CIMI:", "+GMI:", "+GMM:", "+GMR:")
NO_INFO = ("AT", "ATE0", "ATE1", "ATZ", "AT&F")


def _bare_lines_expected(cmd: "_Command") -> bool:
    if cmd.prefix is None:
        return cmd.text.upper() not in NO_INFO
    return cmd.prefix in BARE_INFO


def _announced_length(urc: str) -> int | None:
    """'+CDS: 25' / '+CMT: ,25' / '+CMT: "alpha",25' → 25."""
    try:
        return int(urc.split(":", 1)[1].strip().split(",")[-1])
    except (IndexError, ValueError):
        return None


def _code(line: str) -> int:
    tail = line.split(":", 1)[-1].strip()
    try:
        return int(tail)
    except ValueError:
        return -1
