"""A drill runs its clock 60 times faster, but Asterisk (emulated or not) answers in real time: the
FastAGI watchdogs must be stretched like the AMI and modem ones, or a loaded machine that takes a
fifth of a real second to answer ANSWER looks like a dead channel and the commander's keypress is
lost (a drill report once missed a keypad team's "arrived" that way)."""
from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from gateway.config import load_config
from gateway.drill.clock import ScaledClock
from gateway.drill.runner import drill_config
from gateway.wiring import build_service
from tests.test_embedded_drill import free_port

SPEED = 60
PEER = IPv4Address("TCP", "127.0.0.1", 40000)


def feedback_line_connection(tmp_path, speed=None):
    cfg = load_config(None, {
        "gateway": {"database_url": f"sqlite:///{tmp_path / 'y.sqlite'}", "data_dir": str(tmp_path),
                    "embedded": True},
        "http": {"port": 0}, "ivr": {"port": free_port()}, "embedded": {"modems": 1, "ami_port": free_port()},
    })
    real = MemoryReactorClock()        # the emulated modems' ptys are registered, never read
    clock = ScaledClock(real, SPEED)
    gw = build_service(drill_config(cfg, SPEED) if speed else cfg, clock)
    proto = gw.fastagi_factory.buildProtocol(PEER)
    tr = StringTransport(peerAddress=PEER)
    proto.makeConnection(tr)
    proto.dataReceived(b"agi_network: yes\nagi_network_script: feedback\nagi_request: agi://127.0.0.1/feedback\n"
                       b"agi_channel: PJSIP/trunk-00000001\nagi_uniqueid: 1700000000.1\n"
                       b"agi_callerid: 13800000001\n\n")
    return gw, real, proto, tr


def test_a_drill_waits_for_asterisk_in_real_seconds_not_simulated_ones(tmp_path):
    gw, real, proto, tr = feedback_line_connection(tmp_path, speed=SPEED)
    try:
        assert tr.value().startswith(b"ANSWER\n")
        real.advance(1.0)                   # a loaded machine: a real second to answer (60 simulated)
        assert not tr.disconnecting
        tr.clear()
        proto.dataReceived(b"200 result=0\n")
        assert tr.value().startswith(b"STREAM FILE "), tr.value()    # the call goes on to the welcome
        real.advance(10.0)                  # 600 simulated seconds: this one is past any watchdog
        assert tr.disconnecting
    finally:
        gw.emulated_modems.stop()


def test_outside_a_drill_a_silent_asterisk_is_given_up_after_the_configured_command_timeout(tmp_path):
    # The same set-up without drill_config: the 10 s watchdog runs on the scaled clock (1/6 s real),
    # which is what the drill's stretching is there to prevent.
    gw, real, proto, tr = feedback_line_connection(tmp_path, speed=None)
    try:
        assert tr.value().startswith(b"ANSWER\n")
        real.advance(0.2)
        assert tr.disconnecting
    finally:
        gw.emulated_modems.stop()
