"""One emulated PBX for several gateways (drill nodes sharing it): its FastAGI sessions go to the
first gateway that accepts the connection, as Asterisk's dialplan with several gateways does.
Real loopback sockets; the clock is the test's."""
import socket

import pytest_twisted
from twisted.internet import reactor

from gateway.ami.emulator.pbx import EmulatedPbx
from tests.test_pbx_calls import COMMANDER, bounded, clock, gateway_side  # noqa: F401 - fixtures


def closed_port() -> int:
    """A loopback port nobody listens on (a gateway that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pbx_with(targets, clock):
    (host, port), *rest = targets
    p = EmulatedPbx(reactor, agi_host=host, agi_port=port, agi_idle_timeout=5, clock=clock)
    p.agi_fallbacks = rest
    return p


@pytest_twisted.inlineCallbacks
def test_a_call_goes_to_the_next_gateway_when_the_first_is_down(gateway_side, clock):  # noqa: F811
    sink, _, live = gateway_side
    pbx = pbx_with([("127.0.0.1", closed_port()), ("127.0.0.1", live)], clock)
    call = pbx.feedback_call(COMMANDER, ["3"])
    yield bounded(clock, call.ended)
    assert call.agi_status in ("SUCCESS", "HANGUP")
    (answer,) = sink.answers                      # recorded by the gateway that was up
    assert (answer.caller, answer.order_code, answer.digit) == (COMMANDER, "0427", "3")


@pytest_twisted.inlineCallbacks
def test_every_gateway_down_is_agistatus_failure(clock):  # noqa: F811
    pbx = pbx_with([("127.0.0.1", closed_port()), ("127.0.0.1", closed_port())], clock)
    call = pbx.feedback_call(COMMANDER, ["3"])
    yield bounded(clock, call.ended)
    assert call.agi_status == "FAILURE" and pbx.agi_connections == 1
