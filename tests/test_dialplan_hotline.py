"""The project's hotline dialplan, loaded and run by the emulated PBX: an emergency call goes
straight to the call-takers' queue (no FastAGI round trip, even when the gateway hangs with its
socket open); the IVR runs only when no call-taker is logged in, bounded by TIMEOUT(absolute).
And the dialplan files themselves: one host:port global, `leavewhenempty`."""
import re
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor

from gateway.ami import AmiLink
from gateway.ami.emulator.dialplan import Dialplan, DialplanError, expression
from gateway.ami.emulator.pbx import HOTLINE_CONTEXTS, PROJECT_DIALPLAN, EmulatedPbx
from gateway.ami.testing import wait_for
from tests.secrets import AMI_SECRET

DIALPLANS = Path(__file__).resolve().parent.parent / "dialplans"


class HangingGateway(protocol.Factory):
    """A FastAGI port that accepts and then never answers (a hung gateway)."""

    def __init__(self):
        self.connections = 0

    def buildProtocol(self, addr):
        self.connections += 1
        return protocol.Protocol()


@pytest.fixture
def hung():
    f = HangingGateway()
    port = reactor.listenTCP(0, f, interface="127.0.0.1")
    yield f, port.getHost().port
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@defer.inlineCallbacks
def pbx_and_link(agi_port, **options):
    pbx = EmulatedPbx(reactor, agi_port=agi_port, **options)
    pbx.listen(0)
    events = []
    lk = AmiLink(reactor, "127.0.0.1", pbx.port_number, username="gateway", secret=AMI_SECRET, backoff_initial=0.05)
    lk.add_event_listener(events.append)
    lk.startService()
    yield lk.when_ready()
    return pbx, lk, events


def names(events, uid):
    return [m.name + (f":{m['Application']}" if m.name == "Newexten" else "") for m in events
            if m.get("Uniqueid") == uid]


@pytest_twisted.inlineCallbacks
def test_a_110_call_reaches_the_queue_with_no_fastagi_connection_while_the_gateway_hangs(hung):
    gateway, agi_port = hung
    pbx, lk, events = yield pbx_and_link(agi_port)
    try:
        started = time.monotonic()
        call = pbx.hotline_call("110", "13805760001", outcome="answered", queue_seconds=0.2, talk_seconds=0.1,
                                speed=4)
        yield wait_for(reactor, lambda: any(m.name == "QueueCallerJoin" for m in events), 5, what="queue join")
        joined_after = time.monotonic() - started
        yield wait_for(reactor, lambda: call.ended.called, 5, what="call end")
        uid = call.info["uniqueid"]
        seen = names(events, uid)
        assert seen[:7] == ["Newchannel", "Newexten:NoOp", "Newexten:Set", "VarSet", "Newexten:Goto",
                            "Newexten:Answer", "Newstate"]
        assert "Newexten:Queue" in seen and "AgentConnect" in seen
        assert not any(s == "Newexten:AGI" for s in seen)
        assert gateway.connections == 0 and pbx.agi_connections == 0       # no round trip at all
        assert joined_after < 1.0, joined_after                            # nothing waited on the gateway
        hotline_set = [m for m in events if m.name == "VarSet" and m.get("Uniqueid") == uid]
        assert (hotline_set[0]["Variable"], hotline_set[0]["Value"]) == ("__HOTLINE", "110")
    finally:
        yield lk.stopService()
        yield pbx.stop()


@pytest_twisted.inlineCallbacks
def test_no_calltaker_logged_in_runs_the_ivr_under_an_absolute_timeout_then_the_queue(hung):
    gateway, agi_port = hung
    pbx, lk, events = yield pbx_and_link(agi_port, calltakers_logged_in=0)
    pbx.dialplan.globals["IVR_LIMIT"] = "0.5"     # as a site would set it in [globals]
    try:
        started = time.monotonic()
        call = pbx.hotline_call("119", "13805760002", outcome="abandoned_queue", queue_seconds=0.3, speed=4)
        yield wait_for(reactor, lambda: any(m.name == "QueueCallerJoin" for m in events), 5, what="queue join")
        joined_after = time.monotonic() - started
        yield wait_for(reactor, lambda: call.ended.called, 5, what="call end")
        uid = call.info["uniqueid"]
        seen = names(events, uid)
        assert "UserEvent" in seen and seen.index("UserEvent") < seen.index("Newexten:AGI")
        user = next(m for m in events if m.name == "UserEvent")
        assert (user["UserEvent"], user["Line"], user["Privilege"]) == ("YihuNoCalltaker", "119", "user,all")
        assert gateway.connections == 1                      # the IVR was tried ...
        assert 0.5 <= joined_after < 2.0, joined_after       # ... for IVR_LIMIT seconds, no longer
        assert seen.index("Newexten:AGI") < seen.index("Newexten:Queue")
        agi = next(m for m in events if m.name == "Newexten" and m["Application"] == "AGI")
        assert agi["AppData"] == f"agi://127.0.0.1:{agi_port}/nocalltaker?line=119"
        assert [m["Extension"] for m in events if m.name == "Newexten" and m["Application"] == "Queue"] == ["s"]
        assert "T" in [m["Extension"] for m in events if m.name == "Newexten"]
    finally:
        yield lk.stopService()
        yield pbx.stop()


# --- the files ------------------------------------------------------------------------------------

def test_the_project_dialplan_loads_and_only_its_own_steps_are_run():
    plan = Dialplan.load(PROJECT_DIALPLAN, HOTLINE_CONTEXTS)
    assert sorted(plan.contexts) == ["hotline", "hotline-intake"]
    intake = plan.steps("hotline-intake", "s")
    assert [s.app for s in intake][:3] == ["Answer", "GotoIf", "Queue"]     # the queue comes before any AGI
    assert plan.steps("hotline", "119")[1].args == "__HOTLINE=${EXTEN}"


def test_an_application_the_emulator_does_not_run_is_an_error_not_skipped():
    with pytest.raises(DialplanError, match=r"x.conf:3: application Background\(\) is not known"):
        Dialplan.parse("[hotline]\nexten => 110,1,Answer()\n same => n,Background(hello)\n", "x.conf")
    plan = Dialplan.parse("[hotline]\nexten => 110,1,NoOp(${CALLERID(num)})\n", "x.conf")
    from gateway.ami.emulator.dialplan import substitute
    with pytest.raises(DialplanError, match="function CALLERID"):
        substitute(plan.steps("hotline", "110")[0].args, lambda v: "",
                   lambda f, a: (_ for _ in ()).throw(DialplanError(f"function {f}() is not known")))
    with pytest.raises(DialplanError, match="no context"):
        Dialplan.parse("[other]\nexten => s,1,NoOp()\n", "x.conf", ("hotline",))


@pytest.mark.parametrize("expr, value", [('"HANGUP" = "HANGUP"', "1"), ('"SUCCESS" = "HANGUP"', "0"),
                                         ("0 = 0", "1"), ("3 = 0", "0"), ('"a" = "b" | 1 = 1', "1"),
                                         ('1 = 1 & "x" != "x"', "0"), ("2 > 1", "1")])
def test_expressions(expr, value):
    assert expression(expr) == value


def test_the_fastagi_address_is_one_global_with_its_port():
    text = (DIALPLANS / "extensions.conf").read_text(encoding="utf-8")
    plan = Dialplan.load(DIALPLANS / "extensions.conf")
    assert re.fullmatch(r"[\w.\-]+:\d+", plan.globals["GATEWAY"])
    urls = re.findall(r"AGI\((agi://[^)]*)\)", text)
    assert urls and all(u.startswith("agi://${GATEWAY}/") for u in urls), urls


def test_queues_conf_uses_the_option_asterisk_22_knows():
    text = (DIALPLANS / "queues.conf").read_text(encoding="utf-8")
    options = [ln.split("=")[0].strip() for ln in text.splitlines() if "=" in ln and not ln.lstrip().startswith(";")]
    assert "leavewhenempty" in options and "leaveempty" not in options
    assert "periodic-announce" in options


@pytest_twisted.inlineCallbacks
def test_end_to_end_a_caller_waiting_past_the_threshold_reaches_the_duty_supervisor(hung, database):
    # The PBX runs the project's dialplan; the gateway side sees only AMI.
    from datetime import datetime, timedelta, timezone

    from gateway.hotline.alerts import HotlineAlerts
    from gateway.hotline.config import HotlineSection
    from tests._orders_rig import SUPERVISOR, FakeEvents, FakeOutbox, seed_directory_tx
    yield database.run(seed_directory_tx, 1, datetime.now(timezone.utc) - timedelta(days=1))
    gateway, agi_port = hung
    pbx, lk, events = yield pbx_and_link(agi_port)
    sink, outbox = FakeEvents(), FakeOutbox()
    database.add_event_listener(sink.committed)
    alerts = HotlineAlerts(reactor, database, outbox, HotlineSection(overflow_after_s=0.3, supervisor_wait_s=0.3))
    lk.add_event_listener(alerts.handle)
    try:
        call = pbx.hotline_call("122", "13805760003", outcome="answered", queue_seconds=1.5, talk_seconds=0.1)
        yield wait_for(reactor, lambda: outbox.to(SUPERVISOR), 5, what="supervisor SMS")
        assert [p["line"] for p in sink.of("hotline.overflow")] == ["122"]
        assert "接警队列溢出" in outbox.to(SUPERVISOR, "supervisor")[0]
        yield wait_for(reactor, lambda: call.ended.called and sink.of("hotline.overflow_cleared"), 5, what="cleared")
        assert gateway.connections == 0
    finally:
        alerts.stop()
        yield lk.stopService()
        yield pbx.stop()
