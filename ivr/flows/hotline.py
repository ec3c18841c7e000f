"""The hotline IVR (script `hotline?line=N`) and the overflow message (script `overflow`).

A citizen is never held by the gateway: both flows swallow every failure and return, and both
carry a short deadline; when the connection closes, Asterisk carries on with the dialplan, which
puts the caller into (or back into) the call-takers' queue.
"""
from __future__ import annotations

from twisted.logger import Logger

from ivr.agi.errors import AgiConnectionLost, AgiDeadChannel, ChannelHungUp
from ivr.agi.session import AgiSession
from ivr.callers import to_e164
from ivr.journal import KeypadEntry
from ivr.prompts import PROMPTS, sound

log = Logger()

LINES = ("110", "119", "122")
_HUNG_UP = (ChannelHungUp, AgiDeadChannel, AgiConnectionLost)


class HotlineFlow:
    script = "hotline"

    def __init__(self, reactor, journal=None, *, greet: bool = True, triage_ms: int = 3000,
                 deadline: float = 15.0):
        self.reactor = reactor
        self.journal = journal
        self.greet = greet
        self.triage_ms = triage_ms     # 0: no WAIT FOR DIGIT at all
        self.deadline = deadline       # FastAgiFactory closes the session after this

    async def __call__(self, session: AgiSession) -> str:
        try:
            return await self._run(session)
        except _HUNG_UP:
            log.info("hotline call {call_id}: caller hung up in the IVR", call_id=session.call_id)
            return "abandoned"
        except Exception:  # noqa: BLE001 - whatever broke, the citizen goes on to the queue
            log.failure("hotline call {call_id}: IVR failed; the dialplan continues to the queue",
                        call_id=session.call_id)
            return "failed"

    async def _run(self, session: AgiSession) -> str:
        line = await session.get_variable("HOTLINE")
        if line not in LINES:
            line = session.request.params.get("line") or session.request.env.get("agi_extension", "")
        if line not in LINES:
            log.warn("hotline call {call_id}: unknown line {line!r}", call_id=session.call_id, line=line[:12])
            line = None
        await session.set_variable("INTAKE_ID", session.call_id)
        digit = None
        if self.greet and line and f"hotline_{line}" in PROMPTS:
            digit = (await session.stream_file(sound(f"hotline_{line}"), "0123456789*#")).digit
        if digit is None and self.triage_ms > 0:
            digit = await session.wait_for_digit(self.triage_ms)
        if digit is not None:
            await session.set_variable("TRIAGE", digit)
            self._keep(session, line, digit)
        return "queued"

    def _keep(self, session, line, digit):
        """The citizen's key, kept raw; not awaited, so that a slow disk never holds the call."""
        if self.journal is None:
            return
        d = self.journal.record(KeypadEntry(
            call_id=session.call_id, caller=to_e164(session.request.caller), digits=digit,
            script=self.script, state="parsed", note="hotline triage key", meta={"line": line}))
        d.addErrback(lambda f: log.failure("hotline call {call_id}: triage key not stored", f,
                                           call_id=session.call_id))


class OverflowFlow:
    """A citizen waiting too long hears a fixed message, then goes back to their place.

    A number on the nuisance list with its notice on hears the nuisance notice instead, of the
    same length, at the same point: the call is never held longer than any other.
    `notice_for(caller)` answers from memory (ivr/nuisance_notice.py), never from the database."""
    script = "overflow"

    def __init__(self, deadline: float = 30.0, notice_for=None):
        self.deadline = deadline
        self.notice_for = notice_for

    def _prompt(self, session: AgiSession) -> str:
        try:
            if self.notice_for is not None and self.notice_for(session.request.caller):
                return "hotline_nuisance"
        except Exception:  # noqa: BLE001 - the usual message, whatever the list's trouble
            log.failure("overflow call {call_id}: nuisance check failed", call_id=session.call_id)
        return "hotline_overflow"

    async def __call__(self, session: AgiSession) -> str:
        try:
            played = await session.stream_file(sound(self._prompt(session)))
            return "played" if played.played else "unplayable"
        except _HUNG_UP:
            return "abandoned"
        except Exception:  # noqa: BLE001 - never drop the caller over a message
            log.failure("overflow call {call_id}: message not played", call_id=session.call_id)
            return "failed"
