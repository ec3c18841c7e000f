"""Asterisk's side of one AGI session, as pure logic: a command line in, reply lines out.

Reply formats are those of the Asterisk 22 transcripts: `200 result=1 (value)`,
`200 result=49 endpos=9760`, `200 result= (timeout)`, `200 result=-1` on hang-up followed by the
unsolicited `HANGUP` line before the next reply, then `511 Command Not Permitted on a dead channel
or intercept routine` for commands that need a live channel; `510 Invalid or unknown command`;
the multi-line `520-Invalid command syntax.  Proper usage follows:` ... `520 End of proper usage.`
A prompt the emulated Asterisk does not have (see sounds.SoundLibrary) is answered as Asterisk
22 answers it: STREAM FILE `200 result=-1 endpos=0`, GET DATA `200 result=-1`, at once, with no
HANGUP line and the channel still up; the caller's next move is left for the next command.
"""
from __future__ import annotations

import re
import wave
from dataclasses import dataclass, field
from pathlib import Path

from ivr.emulator.caller import HangUp, Press, ScriptedCaller, Speak
from ivr.emulator.sounds import FORMATS, SoundLibrary

DEAD = "511 Command Not Permitted on a dead channel or intercept routine"
INVALID = "510 Invalid or unknown command"
SAMPLES_PER_PROMPT = 8000          # 1 s at 8 kHz: what endpos says after a whole prompt

# verb -> (min args, max args, allowed on a dead channel, usage)
COMMANDS = {
    "ANSWER": (0, 0, False, "ANSWER"),
    "HANGUP": (0, 1, False, "HANGUP [<channelname>]"),
    "GET VARIABLE": (1, 1, True, "GET VARIABLE <variablename>"),
    "GET FULL VARIABLE": (1, 2, True, "GET FULL VARIABLE <expression> [<channelname>]"),
    "SET VARIABLE": (2, 2, True, "SET VARIABLE <variablename> <value>"),
    "VERBOSE": (1, 2, True, "VERBOSE <message> <level>"),
    "NOOP": (0, 99, True, "NOOP"),
    "STREAM FILE": (2, 3, False, "STREAM FILE <filename> <escape_digits> [<sample offset>]"),
    "SAY DIGITS": (2, 2, False, "SAY DIGITS <number> <escape_digits>"),
    "GET DATA": (1, 3, False, "GET DATA <file to be streamed> [<timeout>] [<maxdigits>]"),
    "WAIT FOR DIGIT": (1, 1, False, "WAIT FOR DIGIT <timeout>"),
    "CHANNEL STATUS": (0, 1, False, "CHANNEL STATUS [<channelname>]"),
    "CONTROL STREAM FILE": (2, 7, False, "CONTROL STREAM FILE <filename> <escape_digits> [<skipms>] "
                                         "[<ffchar>] [<rewchr>] [<pausechr>] [<offsetms>]"),
    "GET OPTION": (2, 3, False, "GET OPTION <filename> <escape_digits> [<timeout>]"),
    "EXEC": (1, 2, False, "EXEC <application> <options>"),
    "RECORD FILE": (4, 7, False, "RECORD FILE <filename> <format> <escape_digits> <timeout> [<offset samples>] "
                                 "[<BEEP>] [<s=silence>]"),
}
RECORD_RATE = 8000                 # samples a second in the 8 kHz formats Asterisk records
_VERBS = [(v, v.split()) for v in sorted(COMMANDS, key=len, reverse=True)]


def split_args(line: str) -> list[str]:
    """Asterisk's AGI argument splitting: whitespace separates, double quotes group, backslash
    escapes the next character."""
    if '"' not in line and "\\" not in line:
        return line.split()
    args, cur, quoted, escaped, started = [], [], False, False, False
    for ch in line:
        if escaped:
            cur.append(ch)
            escaped, started = False, True
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted, started = not quoted, True
        elif ch.isspace() and not quoted:
            if started:
                args.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(ch)
            started = True
    if started:
        args.append("".join(cur))
    return args


@dataclass
class Reply:
    lines: list[str]
    delay: float = 0.0


@dataclass
class EmulatedChannel:
    caller: ScriptedCaller = field(default_factory=ScriptedCaller)
    variables: dict[str, str] = field(default_factory=dict)
    callerid: str = "unknown"
    alive: bool = True
    answered: bool = False
    hangup_to_announce: bool = False      # the HANGUP line goes out before the next reply
    commands: list[str] = field(default_factory=list)
    played: list[str] = field(default_factory=list)     # prompts and digits the caller heard
    hung_up_by: str | None = None                       # "caller" / "gateway"
    sounds: SoundLibrary = field(default_factory=SoundLibrary.installed)
    unplayable: list[str] = field(default_factory=list)  # prompts asked for that do not exist
    recordings: list = field(default_factory=list)       # (file written, samples) by RECORD FILE

    def handle(self, line: str) -> Reply:
        self.commands.append(line)
        reply = self._handle(line)
        if self.hangup_to_announce and not self.alive:
            # As in the transcripts: Asterisk notices the dead channel and says so, out of band,
            # ahead of the reply to whatever the gateway sent next.
            if not (reply.lines and reply.lines[0].startswith("200 result=-1")):
                reply.lines.insert(0, "HANGUP")
                self.hangup_to_announce = False
        return reply

    def _handle(self, line: str) -> Reply:
        words = line.split()
        verb = next((v for v, vw in _VERBS if words[:len(vw)] == vw), None)
        if verb is None:
            return Reply([INVALID])
        lo, hi, dead_ok, usage = COMMANDS[verb]
        args = split_args(line)[len(verb.split()):]
        if not lo <= len(args) <= hi or not self._args_ok(verb, args):
            return Reply(["520-Invalid command syntax.  Proper usage follows:",
                          f" Usage: {usage}", "", "520 End of proper usage."])
        if not self.alive and not dead_ok:
            return Reply([DEAD])
        return getattr(self, "_" + verb.lower().replace(" ", "_"))(args)

    @staticmethod
    def _args_ok(verb, args) -> bool:
        numeric = {"GET DATA": args[1:], "WAIT FOR DIGIT": args[:1], "SAY DIGITS": args[:1],
                   "GET OPTION": args[2:], "RECORD FILE": args[3:4]}.get(verb, [])
        return all(re.fullmatch(r"-?\d+", a) for a in numeric)

    # --- caller-independent ------------------------------------------------------------------------
    def _answer(self, args):
        self.answered = True
        return Reply(["200 result=0"])

    def _hangup(self, args):
        self.alive = False
        self.hung_up_by = self.hung_up_by or "gateway"
        # Asterisk's AGI loop notices the hang-up right after replying, and says so.
        return Reply(["200 result=1", "HANGUP"])

    def _get_variable(self, args):
        value = self.variables.get(args[0])
        return Reply([f"200 result=1 ({value})" if value is not None else "200 result=0"])

    def _get_full_variable(self, args):
        def sub(m):
            name = m.group(1)
            if name == "CALLERID(num)":
                return self.callerid
            return self.variables.get(name, "")
        value = re.sub(r"\$\{([^}]*)\}", sub, args[0])
        return Reply([f"200 result=1 ({value})"])

    def _set_variable(self, args):
        self.variables[args[0]] = args[1]
        return Reply(["200 result=1"])

    def _verbose(self, args):
        return Reply(["200 result=1"])

    def _noop(self, args):
        return Reply(["200 result=0"])

    def _channel_status(self, args):
        return Reply(["200 result=6" if self.answered else "200 result=4"])

    # --- where the caller acts -------------------------------------------------------------------
    def _caller_hangs_up(self, move) -> bool:
        if isinstance(move, HangUp):
            self.caller.take()
            self.alive = False
            self.hung_up_by = "caller"
            self.hangup_to_announce = True
            return True
        return False

    def _missing(self, name: str) -> bool:
        if self.sounds.exists(name):
            return False
        self.unplayable.append(name)
        return True

    def _stream_file(self, args, missing="200 result=-1 endpos=0"):
        name, escape = args[0], args[1]
        if self._missing(name):
            return Reply([missing])
        move = self.caller.peek()
        if self._caller_hangs_up(move):
            return Reply(["200 result=-1 endpos=1760"], move.after)
        self.played.append(name)
        if isinstance(move, Press) and move.barge_in and move.digits[:1] in escape:
            self.caller.take()
            return Reply([f"200 result={ord(move.digits[0])} endpos=1760"], move.after)
        return Reply([f"200 result=0 endpos={SAMPLES_PER_PROMPT}"])

    def _control_stream_file(self, args):
        # As recorded: a file it cannot open is endpos=-1 here, not 0.
        return self._stream_file(args, missing="200 result=-1 endpos=-1")

    def _get_option(self, args):
        """STREAM FILE, then a wait for one key (the timeout, in ms)."""
        played = self._stream_file(args[:2])
        if played.lines[0] != f"200 result=0 endpos={SAMPLES_PER_PROMPT}":
            return played
        key = self._wait_for_digit(args[2:] or ["0"])
        return Reply([f"{key.lines[0]} endpos={SAMPLES_PER_PROMPT}"], key.delay)

    def _exec(self, args):
        app = args[0].lower()
        if app != "playback":
            return Reply(["200 result=-2"])           # Asterisk: no such application
        # Playback of a missing file warns, sets PLAYBACKSTATUS=FAILED and returns 0 (recorded).
        for name in (args[1].split(",")[0].split("&") if len(args) > 1 else []):
            if not self._missing(name):
                self.played.append(name)
        return Reply(["200 result=0"])

    def _say_digits(self, args):
        digits, escape = args
        move = self.caller.peek()
        if self._caller_hangs_up(move):
            return Reply(["200 result=-1"], move.after)
        self.played.append(f"digits:{digits}")
        if isinstance(move, Press) and move.barge_in and move.digits[:1] in escape:
            self.caller.take()
            return Reply([f"200 result={ord(move.digits[0])}"], move.after)
        return Reply(["200 result=0"])

    def _get_data(self, args):
        prompt = args[0]
        max_digits = int(args[2]) if len(args) > 2 else 1024
        if self._missing(prompt):
            return Reply(["200 result=-1"])
        move = self.caller.peek()
        if self._caller_hangs_up(move):
            return Reply(["200 result=-1"], move.after)
        self.played.append(prompt)
        self.caller.take()
        if isinstance(move, Press):
            keyed = move.digits.split("#", 1)[0]
            terminated = "#" in move.digits or len(keyed) >= max_digits
            keyed = keyed[:max_digits]
            return Reply([f"200 result={keyed}" if terminated else f"200 result={keyed} (timeout)"],
                         move.after)
        return Reply(["200 result= (timeout)"], getattr(move, "after", 0.0))

    def _record_file(self, args):
        """As res_agi's handle_recordfile: the beep first (an argument after the timeout that is
        neither a sample offset nor s=N asks for it; a beep it cannot play is `randomerror`),
        then the file (a format it has no module for, or a directory that does not exist, is
        `writefile` with no endpos), then the caller until a key, silence, the timeout or a hang-up."""
        path, fmt, escape, timeout = args[0], args[1], args[2], int(args[3])
        rest = args[4:]
        beep = (len(rest) >= 1 and not re.fullmatch(r"-?\d+", rest[0]) and "=" not in rest[0]) or \
            (len(rest) >= 2 and "=" not in rest[1])
        if beep and self._missing("beep"):
            return Reply(["200 result=-1 (randomerror) endpos=0"])
        target = Path(f"{path}.{fmt}")
        if fmt not in FORMATS or not target.parent.is_dir():
            return Reply(["200 result=-1 (writefile)"])
        move = self.caller.peek()
        if self._caller_hangs_up(move):
            _write_audio(target, fmt, 0)
            return Reply(["200 result=-1 (hangup) endpos=0"], move.after)
        self.caller.take()
        seconds = move.seconds if isinstance(move, Speak) else 0.0
        if timeout >= 0:
            seconds = min(seconds, timeout / 1000.0)
        samples = int(seconds * RECORD_RATE)
        _write_audio(target, fmt, samples)
        self.recordings.append((str(target), samples))
        after = getattr(move, "after", 0.0) + seconds
        if isinstance(move, Speak) and move.end == "hangup":
            self.alive, self.hung_up_by, self.hangup_to_announce = False, "caller", True
            return Reply([f"200 result=-1 (hangup) endpos={samples}"], after)
        if isinstance(move, Speak) and move.end[:1] and move.end[:1] in escape and move.end != "silence":
            return Reply([f"200 result={ord(move.end[0])} (dtmf) endpos={samples}"], after)
        return Reply([f"200 result=0 (timeout) endpos={samples}"], after)

    def _wait_for_digit(self, args):
        move = self.caller.peek()
        if self._caller_hangs_up(move):
            return Reply(["200 result=-1"], move.after)
        self.caller.take()
        if isinstance(move, Press):
            return Reply([f"200 result={ord(move.digits[0])}"], move.after)
        return Reply(["200 result=0"], getattr(move, "after", 0.0))


def _write_audio(target: Path, fmt: str, samples: int) -> None:
    """The file Asterisk leaves: 8 kHz mono (silence here), `samples` long."""
    if fmt == "wav":
        with wave.open(str(target), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RECORD_RATE)
            w.writeframes(b"\0\0" * samples)
    else:
        target.write_bytes(b"\0" * samples)


__all__ = ["EmulatedChannel", "Reply", "split_args", "COMMANDS", "DEAD", "INVALID"]
