"""The diagnostic check (asterisk-ami's blocking client, run off the reactor thread) against
the emulator, and the CLI commands around it."""
import argparse
import threading

import pytest
import pytest_twisted
from twisted.internet import reactor

from gateway.ami.cli import add_ami_commands
from gateway.ami.diagnose import check_ami_deferred
from gateway.ami.emulator import AmiEmulator, HotlineCall
from gateway.ami.testing import run_deferred, run_for, test_clock


@pytest.fixture
def em():
    e = AmiEmulator(reactor, login_fail_delay=0.05, clock=test_clock())
    e.listen(0, "127.0.0.1")
    yield e
    pytest_twisted.blockon(e.stop())


@pytest_twisted.inlineCallbacks
def test_check_reports_channels_hotline_calls_and_queues(em):
    call = HotlineCall(line="110", outcome="answered", ivr_seconds=0.2, queue_seconds=0.2,
                       talk_seconds=3)
    done = em.play(call)
    yield run_for(reactor, em.clock, 0.8)        # in the bridge with the call-taker
    reactor_thread = threading.get_ident()
    res = yield check_ami_deferred(reactor, "127.0.0.1", em.port_number, "gateway", "rig-secret",
                                   timeout=3)
    assert res.ok, res.lines()
    assert res.banner == "Asterisk Call Manager/11.0.0"
    assert res.channels == 2 and res.hotline_calls == 1
    assert res.queues["calltakers"]["members"] == 2
    assert threading.get_ident() == reactor_thread
    yield run_deferred(reactor, em.clock, done)


@pytest_twisted.inlineCallbacks
def test_check_says_what_is_wrong(em):
    # Asterisk refuses a bad login after a delay (on the emulator's clock, driven here)
    res = yield run_deferred(reactor, em.clock, check_ami_deferred(
        reactor, "127.0.0.1", em.port_number, "gateway", "wrong", timeout=2))
    assert not res.ok and res.reachable and "login refused" in res.error
    port = em.port_number
    yield em.stop()
    res = yield check_ami_deferred(reactor, "127.0.0.1", port, "gateway", "x", timeout=1)
    assert not res.reachable and "cannot connect" in res.error
    assert "PROBLEM" in res.lines()[0]


def test_cli_registers_check_and_emulator():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command")
    add_ami_commands(sub)
    args = ap.parse_args(["ami", "check", "--host", "10.0.0.1", "--secret", "s"])
    assert args.func.__name__ == "cmd_check" and args.port == 5038
    args = ap.parse_args(["ami", "emulator", "--", "--port", "5039"])
    assert args.emulator_args == ["--port", "5039"]


def test_emulator_runs_standalone():
    import re
    import socket
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "gateway.ami.emulator", "--port", "0",
                             "--calls", "2", "--rate", "10", "--seed", "1", "--speed", "20"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        for _ in range(50):
            line = proc.stderr.readline()
            if "listening on" in line:
                break
        port = int(re.search(r":(\d+) ", line).group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"Action: Login\r\nUsername: gateway\r\nSecret: rig-secret\r\n\r\n")
            data = b""
            while b"Event: QueueCallerJoin" not in data and b"Event: Hangup" not in data:
                chunk = s.recv(65536)
                assert chunk, data
                data += chunk
        assert data.startswith(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n")
    finally:
        proc.kill()
        proc.wait()
