"""Scripted call scenarios for the emulator: hotline calls and outbound order calls.

A scenario is an iterable of ``(delay_seconds, events)`` steps; the emulator sends each step's
events ``delay`` seconds after the previous step (scaled by ``speed``).  Channel state changes as
the generator advances, so CoreShowChannels during a scenario shows what is live at that moment.

The event sequences follow the recorded Asterisk 22 calls (hotline-answered, hotline-abandoned,
hotline-queue-abandon, order-call-*), with production-like channel names (a PJSIP trunk by
default; ``tech="Local"`` gives the rig's Local channels, ``"DAHDI/1"`` an E1/PRI span).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gateway.ami.emulator.model import Chan, Ids, event

HOTLINE_OUTCOMES = ("answered", "abandoned_ivr", "abandoned_queue", "failed")
ORDER_OUTCOMES = {"answered": 4, "busy": 5, "noanswer": 3, "congestion": 8, "nosuch": 0,
                  "failed": 0}


def _ev(name, chan: Chan | None = None, *extra, dest: Chan | None = None):
    parts = []
    if chan is not None:
        parts.append(chan.block())
    if dest is not None:
        parts.append(dest.block("Dest"))
    parts.extend(extra)
    return event(name, *parts)


def _newexten(c: Chan, app: str, data: str):
    return _ev("Newexten", c, [("Extension", c.exten), ("Application", app), ("AppData", data)])


def _varset(c: Chan, var: str, value: str):
    return _ev("VarSet", c, [("Variable", var), ("Value", value)])


def _hangup(c: Chan, cause: int = 16, text: str = "Normal Clearing"):
    return _ev("Hangup", c, [("Cause", str(cause)), ("Cause-txt", text)])


def _bridge(bid: str, n: int):
    return [("BridgeUniqueid", bid), ("BridgeType", "basic"), ("BridgeTechnology", "simple_bridge"),
            ("BridgeCreator", "<unknown>"), ("BridgeName", "<unknown>"),
            ("BridgeNumChannels", str(n)), ("BridgeVideoSourceMode", "none")]


@dataclass
class HotlineCall:
    """One inbound call on a merged hotline line.

    outcome: answered / abandoned_ivr (caller hangs up during the IVR) / abandoned_queue (caller
    gives up waiting) / failed (the trunk drops the call before the IVR, cause 38).
    """
    line: str = "110"
    caller: str = "13805761234"
    outcome: str = "answered"
    caller_name: str = "<unknown>"
    tech: str = "PJSIP/trunk"
    calltaker: str = "PJSIP/1001"
    calltaker_name: str | None = None
    queue: str = "calltakers"
    context: str = "hotline"
    ivr: bool = True
    gateway: str = "127.0.0.1"
    ivr_seconds: float = 1.0
    queue_seconds: float = 1.5
    talk_seconds: float = 2.0
    hangup_by: str = "caller"          # who ends an answered call: caller / agent
    speed: float = 1.0
    result: dict = field(default_factory=dict)   # filled while playing: uniqueid, linkedid, ...

    def __post_init__(self):
        if self.outcome not in HOTLINE_OUTCOMES:
            raise ValueError(f"outcome must be one of {HOTLINE_OUTCOMES}")

    def steps(self, em):
        ids: Ids = em.ids
        s = 1.0 / self.speed if self.speed else 0.0
        cvars = em.channelvars
        if self.tech == "Local":
            name = f"Local/{self.line}@{self.context}-{ids.suffix()};2"
        else:
            name = f"{self.tech}-{ids.suffix()}"
        c = Chan(name, ids.uniqueid(), state=4, cid_num=self.caller, cid_name=self.caller_name,
                 context=self.context, exten=self.line, channelvars=cvars)
        c.conn_num, c.conn_name = self.caller, self.caller_name
        self.result.update(uniqueid=c.uniqueid, linkedid=c.linkedid, channel=c.name)
        yield 0.0, [_ev("Newchannel", c), _newexten(c, "NoOp", f"hotline {self.line}")]
        if self.outcome == "failed":
            yield 0.2 * s, [_ev("HangupRequest", c, [("Cause", "38")]),
                            _hangup(c, 38, "Network out of order")]
            return
        c.priority = 2
        ev = [_newexten(c, "Set", f"__HOTLINE={self.line}")]
        c.vars["HOTLINE"] = self.line
        ev.append(_varset(c, "__HOTLINE", self.line))
        c.priority = 3
        ev.append(_newexten(c, "Answer", ""))
        c.state = 6
        ev.append(_ev("Newstate", c))
        yield 0.0, ev
        if self.ivr:
            c.priority = 4
            yield 0.5 * s, [_newexten(c, "AGI", f"agi://{self.gateway}:4573/hotline?line={self.line}")]
            if self.outcome == "abandoned_ivr":
                yield self.ivr_seconds * s, [
                    _ev("HangupRequest", c, [("Cause", "16")]), _varset(c, "AGISTATUS", "HANGUP"),
                    _ev("SoftHangupRequest", c, [("Cause", "16")]), _hangup(c)]
                return
            yield self.ivr_seconds * s, [_varset(c, "AGISTATUS", "SUCCESS")]
        elif self.outcome == "abandoned_ivr":
            yield self.ivr_seconds * s, [_ev("HangupRequest", c, [("Cause", "16")]), _hangup(c)]
            return
        c.priority = 5
        yield from self.queue_steps(em, c, f"{self.queue},t,,,300")

    def queue_steps(self, em, c, app_data: str, newexten: bool = True):
        """The caller in the call-takers' queue: answered after queue_seconds, or abandoned.
        With no call-taker (calltaker ""), nobody rings: the caller waits, then gives up."""
        ids: Ids = em.ids
        s = 1.0 / self.speed if self.speed else 0.0
        cvars = em.channelvars
        member_if = self.calltaker
        member_name = self.calltaker_name or member_if
        ev = [_newexten(c, "Queue", app_data)] if newexten else []
        ev.append(_ev("QueueCallerJoin", c, [("Queue", self.queue), ("Position", "1"),
                                             ("Count", "1")]))
        if not member_if:
            yield 0.0, ev
            yield self.queue_seconds * s, [
                _ev("HangupRequest", c, [("Cause", "16")]),
                _ev("QueueCallerAbandon", c, [("Queue", self.queue), ("Position", "1"), ("OriginalPosition", "1"),
                                              ("HoldTime", str(int(self.queue_seconds)))]),
                _ev("QueueCallerLeave", c, [("Queue", self.queue), ("Position", "1"), ("Count", "0")]),
                _ev("SoftHangupRequest", c, [("Cause", "16")]), _hangup(c)]
            return
        m = Chan(f"{member_if}-{ids.suffix()}", ids.uniqueid(), c.linkedid, state=0,
                 cid_num=self.caller, cid_name=self.caller_name, context="calltakers",
                 exten="s", channelvars=cvars, variables={"HOTLINE": self.line})
        m.conn_num, m.conn_name = self.caller, self.caller_name
        ev.append(_ev("Newchannel", m))
        ev.append(_ev("AgentCalled", c, [("Queue", self.queue), ("Interface", member_if),
                                         ("MemberName", member_name)], dest=m))
        ev.append(_ev("DialBegin", c, [("DialString", member_if.split("/", 1)[-1])], dest=m))
        m.state = 5
        ev.append(_ev("Newstate", m))
        yield 0.0, ev
        wait = self.queue_seconds
        if self.outcome == "abandoned_queue":
            yield wait * s, [
                _ev("HangupRequest", c, [("Cause", "16")]),
                _ev("DialEnd", c, [("DialStatus", "CANCEL")], dest=m),
                _ev("AgentRingNoAnswer", c, [("Queue", self.queue), ("Interface", member_if),
                                             ("MemberName", member_name),
                                             ("RingTime", str(int(wait)))], dest=m),
                _hangup(m, 0, "Unknown"),
                _ev("QueueCallerAbandon", c, [("Queue", self.queue), ("Position", "1"),
                                              ("OriginalPosition", "1"),
                                              ("HoldTime", str(int(wait)))]),
                _ev("QueueCallerLeave", c, [("Queue", self.queue), ("Position", "1"),
                                            ("Count", "0")]),
                _ev("SoftHangupRequest", c, [("Cause", "16")]), _hangup(c)]
            return
        m.state = 6
        bid = ids.bridge()
        yield wait * s, [
            _ev("Newstate", m), _ev("DialEnd", c, [("DialStatus", "ANSWER")], dest=m),
            _ev("QueueCallerLeave", c, [("Queue", self.queue), ("Position", "1"), ("Count", "0")]),
            _ev("AgentConnect", c, [("Queue", self.queue), ("Interface", member_if),
                                    ("MemberName", member_name), ("HoldTime", str(int(wait))),
                                    ("RingTime", str(int(wait)))], dest=m),
            event("BridgeCreate", _bridge(bid, 0)),
            event("BridgeEnter", _bridge(bid, 1), m.block()),
            event("BridgeEnter", _bridge(bid, 2), c.block())]
        first, second = (c, m) if self.hangup_by == "caller" else (m, c)
        yield self.talk_seconds * s, [
            _ev("HangupRequest", first, [("Cause", "16")]),
            _ev("AgentComplete", c, [("Queue", self.queue), ("Interface", member_if),
                                     ("MemberName", member_name), ("HoldTime", str(int(wait))),
                                     ("TalkTime", str(int(self.talk_seconds))),
                                     ("Reason", "caller" if first is c else "agent")], dest=m),
            event("BridgeLeave", _bridge(bid, 1), first.block()),
            event("BridgeLeave", _bridge(bid, 0), second.block()),
            event("BridgeDestroy", _bridge(bid, 0)),
            _hangup(first), _ev("SoftHangupRequest", second, [("Cause", "16")]), _hangup(second)]


@dataclass
class OrderCall:
    """What Asterisk does for an Async Originate into the order-call context.

    outcome: answered (reason 4), busy (5), noanswer (3), congestion (8), nosuch (0: the
    channel cannot be created).  ``headers`` are the Originate's headers, ``action_id`` its id.
    """
    headers: dict
    action_id: str | None
    outcome: str = "answered"
    ring_seconds: float = 0.3
    talk_seconds: float = 3.0
    speed: float = 1.0
    is_async: bool = True
    result: dict = field(default_factory=dict)

    def _originate_response(self, ok: bool, reason: int, chan: Chan | None, requested: str):
        pairs = []
        if self.action_id is not None:
            pairs.append(("ActionID", self.action_id))
        pairs += [("Response", "Success" if ok else "Failure"),
                  ("Channel", chan.name if chan is not None and ok else requested),
                  ("Context", self.headers.get("Context", "")),
                  ("Exten", self.headers.get("Exten", "")), ("Reason", str(reason)),
                  ("Uniqueid", chan.uniqueid if chan is not None and ok else "<unknown>"),
                  ("CallerIDNum", chan.cid_num if chan is not None and ok else "<unknown>"),
                  ("CallerIDName", chan.cid_name if chan is not None and ok else "<unknown>")]
        if ok and chan is not None:
            for v in chan.channelvars:
                pairs.append((f"ChanVariable({chan.name})", f"{v}={chan.vars.get(v, '')}"))
        return event("OriginateResponse", pairs)

    def steps(self, em):
        s = 1.0 / self.speed if self.speed else 0.0
        h = self.headers
        requested = h.get("Channel", "")
        reason = ORDER_OUTCOMES.get(self.outcome, 0)
        variables = {}
        for v in h.get("Variable", []):
            k, _, val = v.partition("=")
            variables[k] = val
        self.result["reason"] = reason
        if self.outcome in ("nosuch", "failed"):
            if self.is_async:
                yield 0.0, [self._originate_response(False, 0, None, requested)]
            return
        tech_res = requested.split("@", 1)[0]
        cid = h.get("CallerID", "")
        cid_num = cid.rpartition("<")[2].rstrip(">") if "<" in cid else (cid or "<unknown>")
        cid_name = cid.split("<")[0].strip().strip('"') if "<" in cid else "<unknown>"
        c = Chan(f"{tech_res}-{em.ids.suffix()}", h.get("ChannelId") or em.ids.uniqueid(),
                 state=0, cid_num=cid_num or "<unknown>", cid_name=cid_name or "<unknown>",
                 context=h.get("Context", "default"), exten=h.get("Exten", "s"),
                 channelvars=em.channelvars, variables=variables)
        self.result.update(uniqueid=c.uniqueid, channel=c.name)
        dial = tech_res.split("/", 1)[-1]
        yield 0.0, [_ev("Newchannel", c), _ev("DialBegin", None, [("DialString", dial)], dest=c)]
        if self.outcome == "busy":
            c.state = 7
            yield self.ring_seconds * s, [
                _ev("DialEnd", None, [("DialStatus", "BUSY")], dest=c),
                *( [self._originate_response(False, 5, c, requested)] if self.is_async else []),
                _hangup(c, 17, "User busy")]
            return
        c.state = 5
        yield 0.0, [_ev("Newstate", c)]
        if self.outcome in ("noanswer", "congestion"):
            status, cause, text = (("NOANSWER", 19, "No user responding") if self.outcome == "noanswer"
                                   else ("CONGESTION", 34, "Circuit/channel congestion"))
            wait = int(h.get("Timeout") or 30000) / 1000.0 if self.outcome == "noanswer" else 0.2
            yield min(wait, self.ring_seconds * 10) * s, [
                _ev("DialEnd", None, [("DialStatus", status)], dest=c),
                *([self._originate_response(False, reason, c, requested)] if self.is_async else []),
                _hangup(c, cause, text)]
            return
        c.state = 6
        ev = [_ev("Newstate", c), _ev("DialEnd", None, [("DialStatus", "ANSWER")], dest=c)]
        c.priority = 1
        ev.append(_newexten(c, "Answer", ""))
        c.priority = 2
        order = variables.get("ORDER_CODE", "")
        ev.append(_newexten(c, "AGI", f"agi://{em.gateway_host}:4573/order?order={order}"))
        # As recorded (order-call-press1): the AGI starts before the OriginateResponse goes out.
        if self.is_async:
            ev.append(self._originate_response(True, 4, c, requested))
        yield self.ring_seconds * s, ev
        yield self.talk_seconds * s, [_ev("HangupRequest", c, [("Cause", "16")]),
                                      _ev("SoftHangupRequest", c, [("Cause", "16")]), _hangup(c)]


def hotline_call(**kw) -> HotlineCall:
    return HotlineCall(**kw)


__all__ = ["HotlineCall", "OrderCall", "hotline_call", "HOTLINE_OUTCOMES", "ORDER_OUTCOMES"]
