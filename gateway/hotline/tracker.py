"""The hotline tracker: one record per inbound call on the merged 110/119/122 lines.

A pure state machine over AMI events (``AmiMessage`` or plain dicts); no I/O.  Every change
is reported to ``on_change(call, kinds)`` where ``kinds`` is a tuple of ``"arrived"``,
``"updated"``, ``"answered"``, ``"abandoned"``, ``"ended"``; the hotline service persists the
record, then publishes the events (``gateway/hotline/service.py``).

How a call is recognised, whatever the channel technology (PJSIP, DAHDI, Local):
- a channel runs real dialplan (not a ``(Outgoing Line)`` dial leg) in a hotline context on
  extension 110/119/122; or
- the dialplan sets ``HOTLINE`` (``Set(__HOTLINE=110)``, a VarSet event); or
- a channel event carries ``ChanVariable: HOTLINE=110`` (manager.conf ``channelvars``), which is
  all there is when the session's event mask leaves out the dialplan class.
A call is keyed by its ``Linkedid``; the first channel recognised is the caller's leg (a
QueueCallerJoin names it for sure).  Channels of the same Linkedid that inherit ``HOTLINE``
(the call-taker's leg) never make a second record.

What is recorded: caller number, arrival (when the caller's channel appeared), IVR (Newexten
to AGI, or AGIExecStart/AsyncAGIStart), queue join (QueueCallerJoin, or Newexten to Queue),
the call-taker who answered (AgentConnect's MemberName, else the other party of the first
bridge), answer time, hold time, hangup time and cause, and the outcome:
``answered`` / ``abandoned_ivr`` (gone before reaching the queue) / ``abandoned_queue``
(gone while waiting) / ``failed`` (unanswered and cut off: a network or system failure cause,
or cause 0, Asterisk hanging the caller up itself).  Abandoned and failed calls both go on the
call-back list; only the citizen's own hang-up counts as abandoned in the figures.

After an AMI outage the link hands over a CoreShowChannels snapshot (``resync_end``): calls
known before the outage whose caller channel is gone are closed (end time = the resync, outcome
``failed`` unless answered: nobody saw the citizen hang up; noted as approximate), and hotline
calls that began meanwhile are opened.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

from gateway.ami.message import AmiMessage, device_of

DEFAULT_LINES = ("110", "119", "122")
DEFAULT_CONTEXTS = ("hotline",)

ANSWERED = "answered"
ABANDONED_IVR = "abandoned_ivr"
ABANDONED_QUEUE = "abandoned_queue"
FAILED = "failed"
ABANDONED = (ABANDONED_IVR, ABANDONED_QUEUE)
# Every call that ended unanswered goes on the call-back list: the citizen who gave up, and the
# one the network or the PBX cut off (the figures count that one as failed, not abandoned).
CALL_BACK = (ABANDONED_IVR, ABANDONED_QUEUE, FAILED)

# Q.850 causes that mean the network or the system failed, not that the caller hung up.
FAILURE_CAUSES = frozenset({2, 3, 27, 34, 38, 41, 42, 44, 47, 58, 63, 65, 66, 69, 79, 95, 96, 97,
                            98, 99, 100, 101, 102, 111, 127})
_DIAL_LEG_APPS = frozenset({"AppDial", "AppDial2", "AppQueue"})
_IVR_APPS = frozenset({"AGI", "EAGI", "DeadAGI"})
_UNKNOWN = frozenset({"", "<unknown>", "unknown", "anonymous"})
# Cause 0 ("Unknown") on the caller's own leg: Asterisk hung it up without a cause from the
# caller's side (a citizen hanging up gives 16, Normal Clearing; see the recorded sessions).
PBX_CUT_CAUSES = frozenset({0})
RESYNC_NOTE = "closed by resync after an AMI outage: end time and outcome are approximate"
FOUND_NOTE = "found live at resync: times before the resync are approximate"


@dataclass
class HotlineCall:
    call_id: str                        # Linkedid of the caller's channel
    line: str
    arrived_at: float                   # epoch seconds
    caller: str | None = None
    channel: str | None = None
    uniqueid: str | None = None         # the caller leg's Uniqueid (joins the FastAGI session)
    ivr_at: float | None = None
    queue_joined_at: float | None = None
    queue: str | None = None
    answered_at: float | None = None
    call_taker: str | None = None
    hold_seconds: float | None = None
    ended_at: float | None = None
    hangup_cause: int | None = None
    hangup_text: str | None = None
    outcome: str | None = None
    note: str | None = None
    state: str = "arrived"              # arrived / ivr / queue / talking / ended
    left_queue_abandoned: bool = False

    def copy(self) -> "HotlineCall":
        return HotlineCall(**asdict(self))

    @property
    def abandoned(self) -> bool:
        return self.outcome in ABANDONED


def _number(v: str | None) -> str | None:
    return None if v is None or v.strip() in _UNKNOWN else v.strip()


def _chanvars(ev, d: dict) -> list[str]:
    getall = getattr(ev, "getall", None)
    if getall is not None:
        return getall("ChanVariable")
    v = d.get("ChanVariable")
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _seconds(duration: str | None) -> float:
    """``HH:MM:SS`` (CoreShowChannel Duration) -> seconds."""
    if not duration:
        return 0.0
    try:
        parts = [int(p) for p in duration.split(":")]
    except ValueError:
        return 0.0
    total = 0
    for p in parts:
        total = total * 60 + p
    return float(total)


class HotlineTracker:
    """Feed it every AMI event with ``handle(ev)``; resync with ``resync_begin``/``resync_end``."""

    def __init__(self, on_change: Callable[[HotlineCall, tuple], None] | None = None, *,
                 lines: Iterable[str] = DEFAULT_LINES, contexts: Iterable[str] = DEFAULT_CONTEXTS,
                 variable: str = "HOTLINE", clock: Callable[[], float],
                 remember_finished: int = 10000):
        self.on_change = on_change or (lambda call, kinds: None)
        self.lines = frozenset(lines)
        self.contexts = frozenset(contexts)
        self.variable = variable
        self._var_prefix = variable + "="
        self._var_names = frozenset({variable, "_" + variable, "__" + variable})
        self.clock = clock       # injected (reactor.seconds): for events without a Timestamp
        self.calls: dict[str, HotlineCall] = {}           # Linkedid -> live call
        self.chans: dict[str, tuple] = {}                 # Uniqueid -> (born, Linkedid, Channel)
        self.bridges: dict[str, dict[str, str]] = {}      # BridgeUniqueid -> {Uniqueid: Channel}
        self.finished: OrderedDict[str, None] = OrderedDict()
        self._remember = remember_finished
        self._handlers = {
            "Newchannel": self._newchannel, "Newexten": self._newexten, "VarSet": self._varset,
            "Newstate": self._newstate, "NewCallerid": self._newcallerid,
            "QueueCallerJoin": self._queue_join, "QueueCallerAbandon": self._queue_abandon,
            "AgentConnect": self._agent_connect, "BridgeEnter": self._bridge_enter,
            "BridgeLeave": self._bridge_leave, "BridgeDestroy": self._bridge_destroy,
            "Hangup": self._hangup, "AGIExecStart": self._agi, "AsyncAGIStart": self._agi,
        }

    # --- input ---------------------------------------------------------------------------------
    def handle(self, ev) -> None:
        """One event: an AmiMessage (headers read on demand) or a plain dict."""
        h = self._handlers.get(ev.name if type(ev) is AmiMessage else ev.get("Event"))
        if h is not None:
            ts = ev.get("Timestamp")
            h(ev, ev, float(ts) if ts else self.clock())

    def _emit(self, call: HotlineCall, *kinds: str) -> None:
        self.on_change(call, kinds)

    # --- recognising a call ----------------------------------------------------------------------
    def _line_from_vars(self, d, ev) -> str | None:
        prefix = self._var_prefix
        for v in _chanvars(ev, d):
            if v.startswith(prefix):
                line = v[len(prefix):]
                return line if line in self.lines else None
        return None

    def _open(self, d, t: float, line: str, note: str | None = None) -> HotlineCall | None:
        lid = d.get("Linkedid") or d.get("Uniqueid")
        uid = d.get("Uniqueid")
        if not lid or lid in self.finished:
            return None
        born = self.chans.get(uid)
        call = HotlineCall(call_id=lid, line=line, arrived_at=born[0] if born else t,
                           caller=_number(d.get("CallerIDNum")), channel=d.get("Channel"),
                           uniqueid=uid, note=note)
        self.calls[lid] = call
        self._emit(call, "arrived")
        return call

    def _call_for(self, d, ev, t: float, line: str | None = None) -> HotlineCall | None:
        """The live call of this event's Linkedid, opening it if the event shows a hotline."""
        lid = d.get("Linkedid")
        call = self.calls.get(lid)
        if call is not None or lid is None or lid in self.finished:
            return call
        if line is None:
            line = self._line_from_vars(d, ev)
        if line is None:
            return None
        return self._open(d, t, line)

    # --- handlers -------------------------------------------------------------------------------
    def _newchannel(self, d, ev, t):
        uid = d.get("Uniqueid")
        if uid:
            self.chans[uid] = (t, d.get("Linkedid"), d.get("Channel"))

    def _newexten(self, d, ev, t):
        line = None
        if d.get("Context") in self.contexts and d.get("AppData") != "(Outgoing Line)":
            exten = d.get("Exten")
            if exten in self.lines:
                line = exten
        call = self._call_for(d, ev, t, line)
        if call is None or d.get("Uniqueid") != call.uniqueid:
            return
        app = d.get("Application")
        if app in _IVR_APPS:
            self._ivr(call, t)
        elif app == "Queue" and call.queue_joined_at is None:
            call.queue_joined_at = t
            call.queue = (d.get("AppData") or "").split(",", 1)[0] or None
            call.state = "queue"
            self._emit(call, "updated")

    def _agi(self, d, ev, t):
        call = self.calls.get(d.get("Linkedid"))
        if call is not None and d.get("Uniqueid") == call.uniqueid:
            self._ivr(call, t)

    def _ivr(self, call: HotlineCall, t: float) -> None:
        if call.ivr_at is None and call.answered_at is None and call.queue_joined_at is None:
            call.ivr_at = t
            call.state = "ivr"
            self._emit(call, "updated")

    def _varset(self, d, ev, t):
        if d.get("Variable") in self._var_names and d.get("Linkedid") not in self.calls:
            value = d.get("Value")
            if value in self.lines:
                self._call_for(d, ev, t, value)

    def _newstate(self, d, ev, t):
        if d.get("Linkedid") not in self.calls:
            self._call_for(d, ev, t)

    def _newcallerid(self, d, ev, t):
        call = self.calls.get(d.get("Linkedid"))
        if call is not None and call.caller is None and d.get("Uniqueid") == call.uniqueid:
            call.caller = _number(d.get("CallerIDNum"))

    def _queue_join(self, d, ev, t):
        call = self._call_for(d, ev, t)
        if call is None:
            return
        before = (call.uniqueid, call.caller, call.queue_joined_at, call.queue, call.state)
        uid = d.get("Uniqueid")
        if uid != call.uniqueid:           # QueueCallerJoin names the caller's leg for sure
            call.uniqueid, call.channel = uid, d.get("Channel")
        if call.caller is None:
            call.caller = _number(d.get("CallerIDNum"))
        if call.queue_joined_at is None:
            call.queue_joined_at = t
        call.queue = d.get("Queue") or call.queue
        if call.answered_at is None:
            call.state = "queue"
        if (call.uniqueid, call.caller, call.queue_joined_at, call.queue, call.state) != before:
            self._emit(call, "updated")

    def _queue_abandon(self, d, ev, t):
        call = self.calls.get(d.get("Linkedid"))
        if call is not None and d.get("Uniqueid") == call.uniqueid:
            call.left_queue_abandoned = True

    def _answered(self, call: HotlineCall, t: float, taker: str | None, hold: float | None):
        call.answered_at = t
        call.call_taker = taker
        if call.queue_joined_at is not None:
            call.hold_seconds = round(max(0.0, t - call.queue_joined_at), 3)
        else:
            call.hold_seconds = hold
        call.state = "talking"
        self._emit(call, "answered")

    def _agent_connect(self, d, ev, t):
        call = self.calls.get(d.get("Linkedid"))
        if call is None or d.get("Uniqueid") != call.uniqueid or call.answered_at is not None:
            return
        taker = d.get("MemberName") or d.get("Interface") or device_of(d.get("DestChannel"))
        try:
            hold = float(d.get("HoldTime") or 0)
        except ValueError:
            hold = None
        self._answered(call, t, taker, hold)

    def _bridge_enter(self, d, ev, t):
        bid = d.get("BridgeUniqueid")
        uid = d.get("Uniqueid")
        if not bid or not uid:
            return
        members = self.bridges.setdefault(bid, {})
        members[uid] = d.get("Channel")
        lid = d.get("Linkedid")
        call = self.calls.get(lid)
        if call is None:
            call = self._call_for(d, ev, t)
        if call is not None and call.answered_at is None and len(members) > 1 \
                and call.uniqueid in members:
            self._answered_by_bridge(call, members, t)
            return
        # A call-taker's channel entering the caller's bridge (the other order).
        if len(members) > 1 and call is None:
            for other_uid in members:
                if other_uid == uid:
                    continue
                other = self._call_of_uid(other_uid)
                if other is not None and other.answered_at is None:
                    self._answered_by_bridge(other, members, t)

    def _call_of_uid(self, uid: str) -> HotlineCall | None:
        born = self.chans.get(uid)
        call = self.calls.get(born[1]) if born else None
        if call is None:
            call = next((c for c in self.calls.values() if c.uniqueid == uid), None)
        return call if call is not None and call.uniqueid == uid else None

    def _answered_by_bridge(self, call: HotlineCall, members: dict, t: float) -> None:
        other = next((ch for u, ch in members.items() if u != call.uniqueid), None)
        self._answered(call, t, device_of(other), None)

    def _bridge_leave(self, d, ev, t):
        members = self.bridges.get(d.get("BridgeUniqueid"))
        if members is not None:
            members.pop(d.get("Uniqueid"), None)
            if not members:
                del self.bridges[d.get("BridgeUniqueid")]

    def _bridge_destroy(self, d, ev, t):
        self.bridges.pop(d.get("BridgeUniqueid"), None)

    def _hangup(self, d, ev, t):
        uid = d.get("Uniqueid")
        self.chans.pop(uid, None)
        call = self.calls.get(d.get("Linkedid"))
        if call is None or uid != call.uniqueid:
            return
        try:
            cause = int(d["Cause"]) if d.get("Cause") not in (None, "") else None
        except ValueError:
            cause = None
        self._end(call, t, cause, d.get("Cause-txt"))

    # --- ending ------------------------------------------------------------------------------------
    @staticmethod
    def classify(call: HotlineCall, cut_by_pbx: bool = False) -> str:
        """cut_by_pbx: the call was closed for us (the resync after an AMI outage), not by the
        caller: a citizen we know nothing of is not counted as having given up."""
        if call.answered_at is not None:
            return ANSWERED
        if cut_by_pbx or call.hangup_cause in FAILURE_CAUSES or call.hangup_cause in PBX_CUT_CAUSES:
            return FAILED
        if call.queue_joined_at is not None or call.left_queue_abandoned:
            return ABANDONED_QUEUE
        return ABANDONED_IVR

    def _end(self, call: HotlineCall, t: float, cause: int | None, text: str | None,
             note: str | None = None, cut_by_pbx: bool = False) -> None:
        call.ended_at = t
        call.hangup_cause = cause
        call.hangup_text = text
        if note:
            call.note = note
        call.outcome = self.classify(call, cut_by_pbx)
        call.state = "ended"
        self.calls.pop(call.call_id, None)
        self.finished[call.call_id] = None
        while len(self.finished) > self._remember:
            self.finished.popitem(last=False)
        if call.outcome in ABANDONED:
            self._emit(call, "abandoned", "ended")
        else:
            self._emit(call, "ended")

    # --- restore and resync ------------------------------------------------------------------------
    def restore(self, calls: Iterable[HotlineCall]) -> None:
        """Calls the database says are still open (the gateway restarted during them): the
        next resync closes those Asterisk no longer has."""
        for call in calls:
            if call.outcome is None and call.call_id not in self.calls:
                self.calls[call.call_id] = call

    def resync_begin(self):
        return set(self.calls), set(self.chans)

    def resync_end(self, token, snapshot) -> None:
        known_calls, known_chans = token
        at = snapshot.at
        live: dict[str, dict] = {}
        for e in snapshot.channels:
            d = getattr(e, "first", e)
            uid = d.get("Uniqueid")
            if uid:
                live[uid] = (d, e)
        waits = {}
        for e in getattr(snapshot, "queue_events", []):
            d = getattr(e, "first", e)
            if d.get("Event") == "QueueEntry" and d.get("Uniqueid"):
                try:
                    waits[d["Uniqueid"]] = float(d.get("Wait") or 0)
                except ValueError:
                    pass
        # Channels and bridges as Asterisk has them now.
        for uid in known_chans:
            if uid not in live:
                self.chans.pop(uid, None)
        bridges: dict[str, dict[str, str]] = {}
        for uid, (d, _e) in live.items():
            if uid not in self.chans:
                self.chans[uid] = (at - _seconds(d.get("Duration")), d.get("Linkedid"),
                                   d.get("Channel"))
            bid = d.get("BridgeId")
            if bid:
                bridges.setdefault(bid, {})[uid] = d.get("Channel")
        self.bridges = bridges
        # Calls that ended while we were away.
        for lid in known_calls:
            call = self.calls.get(lid)
            if call is not None and call.uniqueid not in live:
                self._end(call, at, None, "ended while the AMI link was down", RESYNC_NOTE,
                          cut_by_pbx=True)
        # Calls still live: answered meanwhile?
        for call in list(self.calls.values()):
            entry = live.get(call.uniqueid)
            if entry is None:
                continue
            d = entry[0]
            if call.queue_joined_at is None and d.get("Application") == "Queue":
                call.queue_joined_at = at - waits.get(call.uniqueid, 0.0)
                call.queue = (d.get("ApplicationData") or "").split(",", 1)[0] or call.queue
                call.state = "queue"
                self._emit(call, "updated")
            bid = d.get("BridgeId")
            if call.answered_at is None and bid and len(bridges.get(bid, {})) > 1:
                call.note = call.note or "answered while the AMI link was down: answer time approximate"
                self._answered_by_bridge(call, bridges[bid], at)
        # Hotline calls that began while we were away.
        by_lid: dict[str, list] = {}
        for uid, (d, e) in live.items():
            lid = d.get("Linkedid") or uid
            if lid in self.calls or lid in self.finished:
                continue
            if d.get("Application") in _DIAL_LEG_APPS or d.get("ApplicationData") == "(Outgoing Line)":
                continue
            line = self._line_from_vars(d, e)
            if line is None and d.get("Context") in self.contexts and d.get("Exten") in self.lines:
                line = d.get("Exten")
            if line is not None:
                by_lid.setdefault(lid, []).append((d, line))
        for lid, cands in by_lid.items():
            cands.sort(key=lambda c: (c[0].get("Application") not in ("Queue", "AGI"),
                                      c[0].get("Uniqueid")))
            d, line = cands[0]
            dd = dict(d)
            dd["Linkedid"] = lid
            call = self._open(dd, at, line, FOUND_NOTE)
            if call is None:
                continue
            app = d.get("Application")
            kinds = []
            if app in _IVR_APPS:
                call.ivr_at, call.state = call.arrived_at, "ivr"
                kinds.append("updated")
            elif app == "Queue":
                call.queue_joined_at = at - waits.get(call.uniqueid, 0.0)
                call.queue = (d.get("ApplicationData") or "").split(",", 1)[0] or None
                call.state = "queue"
                kinds.append("updated")
            bid = d.get("BridgeId")
            if bid and len(bridges.get(bid, {})) > 1:
                self._answered_by_bridge(call, bridges[bid], at)
            elif kinds:
                self._emit(call, *kinds)

    # --- views ------------------------------------------------------------------------------------
    def active(self) -> list[HotlineCall]:
        return list(self.calls.values())


__all__ = ["HotlineTracker", "HotlineCall", "device_of", "ANSWERED", "ABANDONED_IVR",
           "ABANDONED_QUEUE", "FAILED", "DEFAULT_LINES", "FAILURE_CAUSES", "CALL_BACK",
           "PBX_CUT_CAUSES"]
