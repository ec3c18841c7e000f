"""The tracker's state machine on plain event dicts: no database, no network."""
import pytest

from gateway.ami.emulator import Transcript
from gateway.ami.link import ResyncSnapshot
from gateway.hotline.tracker import FOUND_NOTE, RESYNC_NOTE, HotlineTracker
from tests._paths import asterisk


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def tracker(**kw):
    changes = []
    clock = Clock()
    t = HotlineTracker(lambda call, kinds: changes.append((kinds, call.copy())), clock=clock, **kw)
    return t, changes, clock


def ended(changes):
    return [c for k, c in changes if "ended" in k]


def chan(name, uid, lid=None, context="from-trunk", exten="s", cid="13800000001", hotline=""):
    return {"Channel": name, "CallerIDNum": cid, "Context": context, "Exten": exten,
            "Uniqueid": uid, "Linkedid": lid or uid,
            "ChanVariable": [f"HOTLINE={hotline}", "ORDER_CODE="]}


def ev(name, c, **extra):
    d = {"Event": name, "Privilege": "call,all", **c}
    d.update(extra)
    return d


@pytest.mark.parametrize("name,line,outcome,caller", [
    ("hotline-answered", "110", "answered", "13805761234"),
    ("hotline-abandoned", "119", "abandoned_ivr", "13905769876"),
    ("hotline-queue-abandon", "122", "abandoned_queue", "15857601111"),
    ("login-eventmask", "110", "answered", "13805761234"),
])
def test_recorded_calls_as_plain_dicts(name, line, outcome, caller):
    t, changes, clock = tracker()
    for ts, m in Transcript.load(asterisk(f"{name}.ami.jsonl")).server:
        if m.kind != "event":
            continue
        d = m.as_dict()
        d["ChanVariable"] = m.getall("ChanVariable")
        clock.t = ts
        t.handle(d)
    (call,) = ended(changes)
    assert (call.line, call.outcome, call.caller) == (line, outcome, caller)
    assert call.channel.startswith("Local/") and call.channel.endswith(";2")
    assert not t.calls and not t.chans


def test_pjsip_call_answered_by_bridge_without_queue_events():
    """A session whose event mask leaves out 'agent': the answer is seen from the bridge."""
    t, changes, clock = tracker()
    caller = chan("PJSIP/trunk-00000001", "9.1", context="hotline", exten="119")
    t.handle(ev("Newchannel", caller))
    clock.t += 0.01
    t.handle(ev("Newexten", caller, Application="Answer", AppData=""))
    assert [k for k, _ in changes] == [("arrived",)]
    clock.t += 1
    t.handle(ev("Newexten", caller, Application="AGI", AppData="agi://gw:4573/hotline?line=119"))
    clock.t += 2
    t.handle(ev("Newexten", caller, Application="Queue", AppData="calltakers,t,,,300"))
    taker = chan("PJSIP/1007-00000002", "9.2", "9.1", context="calltakers", hotline="119")
    t.handle(ev("Newchannel", taker))
    clock.t += 5
    t.handle(ev("BridgeEnter", taker, BridgeUniqueid="b1"))
    assert changes[-1][1].answered_at is None
    t.handle(ev("BridgeEnter", caller, BridgeUniqueid="b1"))
    kinds, call = changes[-1]
    assert kinds == ("answered",) and call.call_taker == "PJSIP/1007"
    assert call.hold_seconds == pytest.approx(5.0)
    assert call.answered_at - call.arrived_at == pytest.approx(8.01)
    clock.t += 30
    t.handle(ev("Hangup", taker, Cause="16", **{"Cause-txt": "Normal Clearing"}))
    assert not ended(changes)              # the call-taker's leg ends nothing
    t.handle(ev("Hangup", caller, Cause="16", **{"Cause-txt": "Normal Clearing"}))
    (call,) = ended(changes)
    assert call.outcome == "answered" and call.ended_at - call.arrived_at == pytest.approx(38.01)


def test_dahdi_call_recognised_from_the_hotline_variable_only():
    t, changes, clock = tracker(contexts=("from-pstn",))
    c = chan("DAHDI/1-1", "7.1", context="default", exten="s")
    t.handle(ev("Newchannel", c))
    t.handle(ev("Newstate", c))                   # nothing says hotline yet
    assert not changes
    c["ChanVariable"] = ["HOTLINE=122", "ORDER_CODE="]
    t.handle(ev("Newstate", c))
    assert changes[0][0] == ("arrived",) and changes[0][1].line == "122"
    t.handle(ev("Hangup", c, Cause="16"))
    assert ended(changes)[0].outcome == "abandoned_ivr"


def test_failure_cause_before_the_ivr_is_failed_and_not_a_second_record():
    t, changes, clock = tracker()
    c = chan("PJSIP/trunk-00000003", "5.1", context="hotline", exten="110")
    t.handle(ev("Newchannel", c))
    t.handle(ev("Newexten", c, Application="NoOp", AppData="hotline 110"))
    t.handle(ev("Hangup", c, Cause="38", **{"Cause-txt": "Network out of order"}))
    (call,) = ended(changes)
    assert call.outcome == "failed" and call.hangup_cause == 38
    # Late events of the same Linkedid do not bring it back.
    t.handle(ev("Newstate", dict(c, ChanVariable=["HOTLINE=110"])))
    assert len([k for k, _ in changes if "arrived" in k]) == 1


def test_other_lines_and_dial_legs_are_not_hotline_calls():
    t, changes, clock = tracker()
    t.handle(ev("Newexten", chan("PJSIP/x-00000009", "3.1", context="hotline", exten="120"),
                Application="NoOp", AppData=""))
    t.handle(ev("Newexten", chan("Local/110@hotline-00000001;1", "3.2", context="hotline",
                                 exten="110"), Application="AppDial2", AppData="(Outgoing Line)"))
    t.handle(ev("VarSet", chan("PJSIP/y-0000000a", "3.3"), Variable="HOTLINE", Value="999"))
    assert changes == []


def test_resync_closes_what_ended_and_opens_what_began_during_an_outage():
    t, changes, clock = tracker()
    gone = chan("PJSIP/trunk-00000011", "1.1", context="hotline", exten="110")
    stays = chan("PJSIP/trunk-00000012", "1.2", context="hotline", exten="119")
    for c in (gone, stays):
        t.handle(ev("Newchannel", c))
        t.handle(ev("Newexten", c, Application="Queue", AppData="calltakers"))
    token = t.resync_begin()
    clock.t += 60
    new = chan("PJSIP/trunk-00000013", "1.3", context="hotline", exten="122", hotline="122")
    member = chan("PJSIP/1002-00000014", "1.4", "1.2", context="calltakers", hotline="119")
    snap = ResyncSnapshot(at=clock.t, channels=[
        dict(stays, Application="Queue", ApplicationData="calltakers", BridgeId="br",
             Duration="00:01:00"),
        dict(member, Application="AppQueue", ApplicationData="(Outgoing Line)", BridgeId="br",
             Duration="00:00:20"),
        dict(new, Application="Queue", ApplicationData="calltakers,t", BridgeId="",
             Duration="00:00:42")],
        queue_events=[{"Event": "QueueEntry", "Queue": "calltakers", "Uniqueid": "1.3",
                       "Wait": "30"}])
    t.resync_end(token, snap)
    closed = ended(changes)
    assert [c.call_id for c in closed] == ["1.1"]
    assert closed[0].outcome == "failed" and closed[0].note == RESYNC_NOTE     # nobody saw it given up
    answered = [c for k, c in changes if k == ("answered",)]
    assert [(c.call_id, c.call_taker) for c in answered] == [("1.2", "PJSIP/1002")]
    opened = [c for k, c in changes if k == ("arrived",) and c.call_id == "1.3"]
    assert opened and opened[0].line == "122" and opened[0].note == FOUND_NOTE
    assert opened[0].arrived_at == pytest.approx(clock.t - 42)
    assert t.calls["1.3"].queue_joined_at == pytest.approx(clock.t - 30)
    assert set(t.calls) == {"1.2", "1.3"}


def test_restored_calls_are_checked_by_the_first_resync():
    from gateway.hotline.tracker import HotlineCall
    t, changes, clock = tracker()
    t.restore([HotlineCall(call_id="8.1", line="110", arrived_at=900.0, uniqueid="8.1",
                           answered_at=910.0, state="talking")])
    token = t.resync_begin()
    t.resync_end(token, ResyncSnapshot(at=clock.t, channels=[]))
    (call,) = ended(changes)
    assert call.outcome == "answered" and call.ended_at == clock.t


def test_event_timestamp_header_wins_over_the_clock():
    t, changes, clock = tracker()
    c = chan("PJSIP/trunk-00000021", "4.1", context="hotline", exten="110")
    t.handle(ev("Newchannel", c, Timestamp="1796012544.500000"))
    t.handle(ev("Newexten", c, Application="NoOp", AppData="", Timestamp="1796012544.600000"))
    assert changes[0][1].arrived_at == pytest.approx(1796012544.5)


def test_many_calls_at_once_keep_apart():
    t, changes, clock = tracker()
    for i in range(300):
        c = chan(f"PJSIP/trunk-{i:08x}", f"2.{i}", context="hotline", exten="110",
                 cid=f"1380000{i:04d}")
        t.handle(ev("Newchannel", c))
        t.handle(ev("Newexten", c, Application="AGI", AppData=""))
    for i in range(0, 300, 2):
        t.handle(ev("Hangup", chan(f"PJSIP/trunk-{i:08x}", f"2.{i}"), Cause="16"))
    assert len(ended(changes)) == 150 and len(t.calls) == 150
    assert {c.caller for c in ended(changes)} == {f"1380000{i:04d}" for i in range(0, 300, 2)}


def _caller_in_queue(t, name, uid, line="110"):
    c = chan(name, uid, context="hotline", exten=line)
    t.handle(ev("Newchannel", c))
    t.handle(ev("Newexten", c, Application="Queue", AppData="calltakers"))
    return c


@pytest.mark.parametrize("headers,outcome", [
    ({"Cause": "16", "Cause-txt": "Normal Clearing"}, "abandoned_queue"),    # the citizen hung up
    ({"Cause": "0", "Cause-txt": "Unknown"}, "failed"),                      # Asterisk cut it off
    ({"Cause": "38", "Cause-txt": "Network out of order"}, "failed"),
    ({}, "abandoned_queue"),                                                 # no cause given: as before
])
def test_who_ended_an_unanswered_call_decides_abandoned_or_failed(headers, outcome):
    t, changes, _clock = tracker()
    c = _caller_in_queue(t, "PJSIP/trunk-00000021", "4.1")
    t.handle(ev("Hangup", c, **headers))
    (call,) = ended(changes)
    assert call.outcome == outcome
    # hotline.abandoned is for citizens who gave up, not for calls the PBX dropped
    assert [k for k, _c in changes if "ended" in k] == [
        ("abandoned", "ended") if outcome.startswith("abandoned") else ("ended",)]
