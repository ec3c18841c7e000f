"""The emulated PBX: both faces of Asterisk at once, over real TCP, for drills, tests and the
gateway's embedded default.

It serves AMI (the ``AmiEmulator``: the gateway's ``AmiLink`` connects to it) and, as Asterisk's
dialplan does, connects as a FastAGI client (``ivr.emulator.place_call``) to the gateway's
FastAGI server whenever a call reaches ``AGI(...)``:

- an Async Originate into ``gateway-out,order`` dials an emulated phone from the directory; if
  it answers, the AGI session ``order?order=<ORDER_CODE>`` runs with the Originate's variables
  (ORDER_CODE, YIHU_PHONE, YIHU_DELIVERY) and the phone's key presses; the AMI stream shows
  what Asterisk shows (Newchannel, DialBegin/DialEnd, Newexten AGI, OriginateResponse with the
  originator's ActionID, Hangup once the session is over); busy -> Failure Reason 5, no answer
  -> Reason 3, a number that does not exist -> Failure Reason 0;
- ``hotline_call(...)``: a citizen on 110/119/122, run through the project's own dialplan
  (dialplans/extensions.conf, contexts [hotline] and [hotline-intake], parsed by
  ``dialplan.py``): straight into the call-takers' queue, with no FastAGI connection at all;
  with no call-taker logged in (``calltakers_logged_in = 0``) the ``nocalltaker`` IVR under
  TIMEOUT(absolute), then the queue.  ``scripted=True`` plays the older scripted scenario
  instead (IVR ``hotline?line=N`` first), which the tracker's IVR outcomes are tested with;
- ``feedback_call(...)``: a commander calls the feedback line: AGI ``feedback``.

    pbx = EmulatedPbx(reactor, agi_host="127.0.0.1", agi_port=4573,
                      phones={"+447700900001": Phone.presses("1", after=0.5),
                              "+447700900002": Phone.busy()},
                      default=Phone.silent())
    pbx.listen(5038)
    call = pbx.hotline_call("119", "13905769876", outcome="abandoned_ivr")
    yield call.ended

Time comes from the reactor given (``callLater``); nothing blocks.  Standalone:
``python -m gateway.ami.emulator.pbx --ami-port 5038 --agi 127.0.0.1:4573 --phones FILE``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from gateway.ami.emulator.dialplan import Dialplan
from gateway.ami.emulator.model import Chan
from gateway.ami.emulator.scenarios import (HOTLINE_OUTCOMES, HotlineCall, OrderCall, _ev, _hangup,
                                            _newexten, _varset)
from gateway.ami.emulator.server import AmiEmulator
from gateway.ami.message import AmiMessage
from ivr.emulator.__main__ import parse_moves
from ivr.emulator.caller import ScriptedCaller

log = Logger()

__all__ = ["EmulatedPbx", "PbxService", "Phone", "PhoneDirectory", "PbxCall", "FeedbackLineCall",
           "dialled_number"]

PROJECT_DIALPLAN = Path(__file__).resolve().parents[3] / "dialplans" / "extensions.conf"
HOTLINE_CONTEXTS = ("hotline", "hotline-intake")
PHONE_ACTIONS = ("answer", "busy", "noanswer", "nosuch", "congestion")
_PROMPTS = ("STREAM FILE", "SAY DIGITS", "GET DATA")
_OUTCOME = {"answer": "answered", "busy": "busy", "noanswer": "noanswer", "nosuch": "nosuch",
            "congestion": "congestion"}


# --- the phones ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phone:
    """What an emulated phone does when it is called.

    action: answer / busy / noanswer (rings until the Originate's Timeout) / nosuch (the channel
    cannot be created) / congestion.  ring: seconds before it answers or is found busy.
    moves (once answered), taken by the prompts and menus in order: digits (answer the next menu,
    e.g. "1", or "0" then "2"), "!1" (press 1 during the next prompt), "silence" (let the next
    menu time out), "hangup" (hang up during the next prompt or menu); then silent.
    after: seconds before each move takes effect.
    """
    action: str = "answer"
    ring: float = 0.2
    moves: tuple = ()
    after: float = 0.0

    def __post_init__(self):
        if self.action not in PHONE_ACTIONS:
            raise ValueError(f"phone action must be one of {PHONE_ACTIONS}, not {self.action!r}")
        object.__setattr__(self, "moves", tuple(self.moves))

    @classmethod
    def presses(cls, *moves: str, after: float = 0.0, ring: float = 0.2) -> "Phone":
        return cls("answer", ring, moves, after)

    @classmethod
    def silent(cls, ring: float = 0.2) -> "Phone":
        """Answers and presses nothing."""
        return cls("answer", ring)

    @classmethod
    def hangs_up(cls, after: float = 0.0, ring: float = 0.2) -> "Phone":
        """Answers, then hangs up during the first prompt."""
        return cls("answer", ring, ("hangup",), after)

    @classmethod
    def busy(cls, ring: float = 0.1) -> "Phone":
        return cls("busy", ring)

    @classmethod
    def unanswered(cls) -> "Phone":
        return cls("noanswer")

    @classmethod
    def missing(cls) -> "Phone":
        return cls("nosuch")

    def caller(self) -> ScriptedCaller:
        """A fresh script of moves for one call."""
        moves = parse_moves(",".join(self.moves))
        if self.after:
            moves = [replace(m, after=self.after) for m in moves]
        return ScriptedCaller(moves)

    @classmethod
    def from_dict(cls, d: dict) -> "Phone":
        unknown = set(d) - {"action", "ring", "moves", "presses", "after"}
        if unknown:
            raise ValueError(f"unknown phone keys: {', '.join(sorted(unknown))}")
        moves = d.get("moves", d.get("presses", ()))
        if isinstance(moves, str):
            moves = [m.strip() for m in moves.split(",") if m.strip()]
        return cls(d.get("action", "answer"), float(d.get("ring", 0.2)),
                   tuple(str(m) for m in moves), float(d.get("after", 0.0)))


def _digits(number: str) -> str:
    return "".join(c for c in str(number) if c.isdigit())


class PhoneDirectory:
    """Emulated phones by number; a dialled number matches in E.164 or national form
    (``+447700900001``, ``447700900001`` and ``07700900001`` are the same phone)."""

    def __init__(self, phones: dict | None = None, default: Phone | None = None):
        self.default = default or Phone.presses("1", after=1.0)
        self._by_digits: dict[str, Phone] = {}
        for number, phone in (phones or {}).items():
            self.add(number, phone)

    def add(self, number: str, phone: Phone) -> None:
        from ivr.order_caller import national
        for key in {_digits(number), _digits(national(number))}:
            if key:
                self._by_digits[key] = phone

    def lookup(self, dialled: str) -> Phone:
        return self._by_digits.get(_digits(dialled), self.default)

    @classmethod
    def load(cls, path) -> "PhoneDirectory":
        """YAML (or JSON): ``{default: {action: answer, moves: ["1"]}, phones: {"+447700900001":
        {action: busy}, ...}}``."""
        import yaml
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        default = Phone.from_dict(data["default"]) if data.get("default") else None
        phones = {str(k): Phone.from_dict(v or {}) for k, v in (data.get("phones") or {}).items()}
        return cls(phones, default)


def dialled_number(channel: str) -> str:
    """``PJSIP/07700900001@trunk`` -> ``07700900001``; ``Local/123@ctx`` -> ``123``."""
    return channel.split("@", 1)[0].split("/", 1)[-1]


# --- what happened ---------------------------------------------------------------------------------
@dataclass
class PbxCall:
    """One call through the PBX, as it went."""
    kind: str                          # order / hotline / feedback
    number: str                        # the phone dialled (order), the caller (hotline, feedback)
    outcome: str                       # order: answered/busy/noanswer/nosuch/...; hotline outcome
    script: str | None = None          # the FastAGI script run, if the call got that far
    action_id: str | None = None       # the Originate's ActionID
    agi: object | None = None          # ivr.emulator.CallRecord of the FastAGI session
    agi_status: str | None = None      # SUCCESS / HANGUP / FAILURE (gateway unreachable)
    info: dict = field(default_factory=dict)       # uniqueid, linkedid, channel (scenario result)
    sessions: list = field(default_factory=list)   # its FastAGI client protocols
    ended: defer.Deferred = field(default_factory=defer.Deferred)   # fires with self at the end

    @property
    def uniqueid(self) -> str | None:
        return self.info.get("uniqueid")

    @property
    def heard(self) -> list[str]:
        return self.agi.played if self.agi is not None else []


def _is_agi(items) -> bool:
    return any(isinstance(m, AmiMessage) and m.name == "Newexten" and m.get("Application") == "AGI"
               for m in items)


def _with_agi_status(msg, status: str):
    if isinstance(msg, AmiMessage) and msg.name == "VarSet" and msg.get("Variable") == "AGISTATUS":
        return AmiMessage([(k, status if k == "Value" else v) for k, v in msg])
    return msg


def _through_agi(steps, call: PbxCall, start_agi):
    """A scenario's steps, with Asterisk's AGI() in the middle: once the step holding the
    Newexten to AGI has been sent, the FastAGI session starts, and the next step waits for it
    to end (AGISTATUS as it ended).  ``call.ended`` fires after the last step."""
    it = iter(steps)
    try:
        for _delay, items in it:
            yield _delay, items
            if not _is_agi(items):
                continue
            session = start_agi()
            try:
                _delay, nxt = next(it)
            except StopIteration:
                break

            def send(em, nxt=nxt):
                for m in nxt:
                    em.emit(_with_agi_status(m, call.agi_status or "SUCCESS"))
            yield session, [send]
    finally:
        if not call.ended.called:
            call.ended.callback(call)


# --- the scenarios -----------------------------------------------------------------------------------
@dataclass
class _PbxOrderCall(OrderCall):
    pbx: "EmulatedPbx" = None
    phone: Phone = None
    call: PbxCall = None

    def steps(self, em):
        c = self.call

        def start():
            h = self.headers
            variables = dict(v.partition("=")[::2] for v in h.get("Variable", []))
            cid = h.get("CallerID") or ""
            callerid = cid.rpartition("<")[2].rstrip(">") if "<" in cid else (cid or "unknown")
            name = cid.split("<")[0].strip().strip('"') if "<" in cid else ""
            code = variables.get("ORDER_CODE", "")
            return self.pbx._run_agi(
                c, f"order?order={code}", self.phone.caller(), callerid=callerid or "unknown",
                calleridname=name or "unknown",
                variables=variables, channel=self.result["channel"],
                uniqueid=self.result["uniqueid"], context=h.get("Context", "gateway-out"),
                extension=h.get("Exten", "order"), priority=2)
        return _through_agi(super().steps(em), c, start)


@dataclass
class _PbxHotlineCall(HotlineCall):
    pbx: "EmulatedPbx" = None
    caller_moves: ScriptedCaller = None
    call: PbxCall = None

    def steps(self, em):
        def start():
            r = self.result
            return self.pbx._run_agi(
                self.call, f"hotline?line={self.line}", self.caller_moves, callerid=self.caller,
                variables={"HOTLINE": self.line}, channel=r["channel"], uniqueid=r["uniqueid"],
                context=self.context, extension=self.line, priority=4)

        def noted(steps):
            for step in steps:
                self.call.info.update(self.result)
                yield step
        return _through_agi(noted(super().steps(em)), self.call, start)


@dataclass
class FeedbackLineCall:
    """A commander calls the feedback line ([feedback] s,1: Answer, AGI feedback, Hangup)."""
    caller: str
    pbx: "EmulatedPbx"
    caller_moves: ScriptedCaller
    call: PbxCall
    tech: str = "PJSIP/trunk"
    context: str = "feedback"

    def steps(self, em):
        c = Chan(f"{self.tech}-{em.ids.suffix()}", em.ids.uniqueid(), state=4, cid_num=self.caller,
                 context=self.context, exten="s", channelvars=em.channelvars)
        c.conn_num = self.caller
        self.call.info.update(uniqueid=c.uniqueid, linkedid=c.linkedid, channel=c.name)

        def start():
            return self.pbx._run_agi(self.call, "feedback", self.caller_moves, callerid=self.caller,
                                     variables={}, channel=c.name, uniqueid=c.uniqueid,
                                     context=self.context, extension="s", priority=2)

        def steps():
            yield 0.0, [_ev("Newchannel", c), _newexten(c, "Answer", "")]
            c.state = 6
            c.priority = 2
            yield 0.0, [_ev("Newstate", c),
                        _newexten(c, "AGI", f"agi://{self.pbx.agi_host}:4573/feedback")]
            c.priority = 3
            yield 0.0, [_varset(c, "AGISTATUS", "SUCCESS"),
                        _ev("SoftHangupRequest", c, [("Cause", "16")]), _hangup(c)]
        return _through_agi(steps(), self.call, start)


# --- the PBX -----------------------------------------------------------------------------------------
class _PbxAmi(AmiEmulator):
    """The AMI face; an Originate dials the PBX's phones instead of a fixed outcome."""

    pbx: "EmulatedPbx"

    def order_call(self, headers, action_id, outcome, is_async):
        return self.pbx._order_call(headers, action_id, is_async)


class EmulatedPbx:
    """AMI server + FastAGI client + a directory of phones.  See the module docstring."""

    def __init__(self, reactor, *, agi_host: str = "127.0.0.1", agi_port: int = 4573,
                 phones: PhoneDirectory | dict | None = None, default: Phone | None = None,
                 agi_idle_timeout: float = 30.0, prompt_seconds: float = 0.0, sounds=None,
                 dialplan: Dialplan | str | Path | None = PROJECT_DIALPLAN, calltakers_logged_in: int = 3,
                 journal=None,
                 **ami_options):
        """phones: number -> Phone (or a PhoneDirectory); default: what unknown numbers do.
        prompt_seconds: how long each prompt takes to play (0: at once, for tests).
        sounds: the prompts installed (an ivr.emulator.sounds.SoundLibrary; default: Asterisk's
        core sounds and the project's shipped prompts); a missing one answers as Asterisk does.
        dialplan: the extensions.conf whose hotline contexts the calls run (loaded now: a step
        the emulator cannot run is an error here); calltakers_logged_in: what
        QUEUE_MEMBER(calltakers,logged) answers.
        journal: a NetworkJournal (gateway/netjournal.py) recording every call placed.
        ami_options go to AmiEmulator (users, channelvars, queues, login_fail_delay, clock, ...);
        its clock also times the FastAGI side (the phones' key presses)."""
        self.reactor = reactor
        self.agi_host, self.agi_port = agi_host, agi_port
        self.agi_idle_timeout = agi_idle_timeout
        self.prompt_seconds = prompt_seconds
        self.sounds = sounds
        if isinstance(phones, PhoneDirectory):
            self.phones = phones
            if default is not None:
                self.phones.default = default
        else:
            self.phones = PhoneDirectory(phones, default)
        ami_options.setdefault("gateway_host", agi_host)
        self.ami = _PbxAmi(reactor, **ami_options)
        self.ami.pbx = self
        self.calls: list[PbxCall] = []
        self._agi_sessions: set = set()
        self.dialplan = dialplan if isinstance(dialplan, Dialplan) or dialplan is None else \
            Dialplan.load(dialplan, HOTLINE_CONTEXTS)
        self.calltakers_logged_in = calltakers_logged_in
        self.agi_connections = 0          # FastAGI connections made (a call needing none makes none)
        self.journal = journal

    def queue_member(self, queue: str, what: str) -> int:
        """QUEUE_MEMBER(queue, logged|free|ready|count) of the one call-takers' queue."""
        if what not in ("logged", "free", "ready", "count"):
            raise ValueError(f"QUEUE_MEMBER option {what!r} not emulated")
        return self.calltakers_logged_in

    def drop_agi(self, call: PbxCall) -> None:
        """Asterisk hangs up a call's AGI (its absolute timeout passed): the socket is closed."""
        for proto in call.sessions:
            if proto.transport is not None:
                proto.transport.abortConnection()

    # --- lifecycle ------------------------------------------------------------------------------
    def listen(self, port: int = 5038, interface: str = "127.0.0.1"):
        """Serve AMI; port 0 picks a free one (``port_number``)."""
        return self.ami.listen(port, interface)

    @property
    def port_number(self) -> int:
        return self.ami.port_number

    def stop(self) -> defer.Deferred:
        """Stop serving AMI, drop every AMI session and FastAGI session; calls stop where they are."""
        for proto in list(self._agi_sessions):
            if proto.transport is not None:
                proto.transport.abortConnection()
            else:       # still connecting: dropped the moment it is up
                proto.connectionMade = lambda p=proto: p.transport.abortConnection()
        return self.ami.stop()

    def add_phone(self, number: str, phone: Phone) -> None:
        self.phones.add(number, phone)

    # --- calls ----------------------------------------------------------------------------------
    def hotline_call(self, line: str = "110", caller: str = "13805761234", *,
                     outcome: str = "answered", moves=(), after: float = 0.0,
                     queue_seconds: float = 1.0, talk_seconds: float = 2.0,
                     ivr: bool = True, scripted: bool = False, **scenario) -> PbxCall:
        """A citizen calls ``line``.  outcome: answered (a call-taker answers after
        ``queue_seconds``, they talk ``talk_seconds``) / abandoned_ivr (hangs up in the IVR) /
        abandoned_queue (gives up after ``queue_seconds``) / failed (the trunk drops it).
        moves: what the citizen presses in the IVR (as Phone.moves)."""
        if outcome not in HOTLINE_OUTCOMES:
            raise ValueError(f"outcome must be one of {HOTLINE_OUTCOMES}")
        moves = list(moves) + (["hangup"] if outcome == "abandoned_ivr" else [])
        script = Phone("answer", 0.0, tuple(moves), after).caller()
        call = PbxCall("hotline", caller, outcome)
        self.calls.append(call)
        if self.dialplan is not None and not scripted:
            from gateway.ami.emulator.dialplan_call import DialplanHotlineCall
            sc = DialplanHotlineCall(line=line, caller=caller, outcome=outcome, queue_seconds=queue_seconds,
                                     talk_seconds=talk_seconds, plan=self.dialplan, pbx=self, caller_moves=script,
                                     call=call, globals_override={"GATEWAY": f"{self.agi_host}:{self.agi_port}"},
                                     **scenario)
        else:
            sc = _PbxHotlineCall(line=line, caller=caller, outcome=outcome, gateway=self.agi_host,
                                 queue_seconds=queue_seconds, talk_seconds=talk_seconds, ivr=ivr,
                                 pbx=self, caller_moves=script, call=call, **scenario)
        self.ami.play(sc).addErrback(self._failed, call)
        return call

    def feedback_call(self, caller: str, moves=(), *, after: float = 0.0) -> PbxCall:
        """A commander calls the feedback line from ``caller`` and presses ``moves``
        (e.g. ``["0427#", "2"]``: the order code, then "arrived")."""
        call = PbxCall("feedback", caller, "answered")
        self.calls.append(call)
        sc = FeedbackLineCall(caller, self, Phone("answer", 0.0, tuple(moves), after).caller(), call)
        self.ami.play(sc).addErrback(self._failed, call)
        return call

    def order_calls(self, number: str | None = None) -> list[PbxCall]:
        return [c for c in self.calls if c.kind == "order"
                and (number is None or _digits(c.number) == _digits(number)
                     or self.phones.lookup(c.number) is self.phones.lookup(number))]

    # --- inside ------------------------------------------------------------------------------------
    def _order_call(self, headers: dict, action_id, is_async: bool) -> OrderCall:
        number = dialled_number(headers.get("Channel", ""))
        phone = self.phones.lookup(number)
        outcome = _OUTCOME[phone.action]
        call = PbxCall("order", number, outcome, action_id=action_id)
        self.calls.append(call)
        if self.journal is not None:
            self.journal.append("call", at=self.reactor.seconds(), number=number,
                                channel_id=headers.get("ChannelId"), outcome=outcome, action_id=action_id)
        ring = 1e6 if outcome == "noanswer" else phone.ring     # noanswer: until the Timeout
        sc = _PbxOrderCall(headers, action_id, outcome=outcome, is_async=is_async,
                           ring_seconds=ring, pbx=self, phone=phone, call=call)
        call.info = sc.result
        log.info("PBX: Originate {aid} to {number}: {outcome}", aid=action_id, number=number,
                 outcome=outcome)
        return sc

    def _failed(self, f, call: PbxCall):
        log.failure("PBX: {kind} call {number} broke", f, kind=call.kind, number=call.number)
        if not call.ended.called:
            call.ended.errback(f)

    def _run_agi(self, call: PbxCall, script: str, caller: ScriptedCaller, *, callerid: str,
                 variables: dict, channel: str, uniqueid: str, context: str, extension: str,
                 priority: int, calleridname: str = "unknown", host: str | None = None,
                 port: int | None = None) -> defer.Deferred:
        """Asterisk's AGI(agi://gateway/script): Deferred[AGISTATUS] when the session is over."""
        host, port = host or self.agi_host, port or self.agi_port
        self.agi_connections += 1
        from ivr.emulator.client import place_call
        call.script = script
        env = {"agi_channel": channel, "agi_type": channel.split("/", 1)[0],
               "agi_uniqueid": uniqueid, "agi_context": context, "agi_extension": extension,
               "agi_priority": str(priority), "agi_calleridname": calleridname}
        protos = []

        def started(proto):
            protos.append(proto)
            call.sessions.append(proto)
            self._agi_sessions.add(proto)
        pace = None
        if self.prompt_seconds > 0:
            def pace(line: str) -> float:
                return self.prompt_seconds if line.startswith(_PROMPTS) else 0.0
        d = defer.Deferred.fromCoroutine(place_call(
            self.reactor, host, port, script, caller=caller,
            variables=variables, callerid=callerid, env=env, pace=pace,
            idle_timeout=self.agi_idle_timeout, started=started, sounds=self.sounds,
            clock=self.ami.clock))

        def done(record):
            call.agi = record
            ch = record.channel
            call.agi_status = "HANGUP" if ch is not None and not ch.alive else "SUCCESS"
            return call.agi_status

        def failed(f):
            # As Asterisk: the gateway unreachable is AGISTATUS=FAILURE, and the dialplan goes on.
            log.warn("PBX: FastAGI {script} to {host}:{port} failed: {why}", script=script,
                     host=host, port=port, why=f.getErrorMessage())
            call.agi_status = "FAILURE"
            return call.agi_status

        def forget(result):
            for p in protos:
                self._agi_sessions.discard(p)
            return result
        return d.addCallbacks(done, failed).addBoth(forget)


class PbxService(service.Service):
    """The PBX as a service of the gateway's tree (embedded default, drills): AMI served while
    it runs, every session dropped when it stops."""

    name = "pbx"

    def __init__(self, pbx: EmulatedPbx, port: int = 5038, interface: str = "127.0.0.1"):
        self.pbx, self.port, self.interface = pbx, port, interface

    def startService(self):
        super().startService()
        self.pbx.listen(self.port, self.interface)

    def stopService(self):
        super().stopService()
        return self.pbx.stop()


def main(argv=None) -> int:
    import argparse
    import sys

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    ap = argparse.ArgumentParser(prog="python -m gateway.ami.emulator.pbx",
                                 description="Emulated Asterisk: AMI server + FastAGI client + phones")
    ap.add_argument("--ami-port", type=int, default=5038)
    ap.add_argument("--interface", default="127.0.0.1", help="AMI address (never expose it)")
    ap.add_argument("--agi", default="127.0.0.1:4573", help="the gateway's FastAGI HOST:PORT")
    ap.add_argument("--phones", help="YAML/JSON phone directory (see PhoneDirectory.load)")
    ap.add_argument("--user", default="gateway")
    ap.add_argument("--secret", default="rig-secret")
    ap.add_argument("--prompt-seconds", type=float, default=1.0,
                    help="how long each prompt plays (default 1 s)")
    args = ap.parse_args(argv)
    host, _, port = args.agi.rpartition(":")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    phones = PhoneDirectory.load(args.phones) if args.phones else PhoneDirectory()
    users = {args.user: {"secret": args.secret, "read": "all", "write": "all"}}
    pbx = EmulatedPbx(reactor, agi_host=host or "127.0.0.1", agi_port=int(port), phones=phones,
                      users=users, prompt_seconds=args.prompt_seconds)
    pbx.listen(args.ami_port, args.interface)
    print(f"emulated PBX: AMI on {args.interface}:{pbx.port_number} (user {args.user}), "
          f"FastAGI to {pbx.agi_host}:{pbx.agi_port}", file=sys.stderr)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

