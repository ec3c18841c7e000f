"""The standalone PBX (``python -m gateway.ami.emulator.pbx``) as a drill runs it: a child
process serving AMI, calling the gateway's FastAGI server, phones from a YAML file."""
import os
import re
import sys

import pytest_twisted
from twisted.internet import defer, protocol, reactor

from gateway.ami import AmiLink
from gateway.ami.testing import wait_for
from ivr.drill import DrillKeypadSink
from ivr.flows.answer_menu import MenuSettings
from ivr.journal import MemoryJournal
from ivr.service import make_fastagi_factory
from tests._paths import REPO
from tests.secrets import AMI_SECRET


class Child(protocol.ProcessProtocol):
    def __init__(self):
        self.err = b""
        self.ended = defer.Deferred()

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


@pytest_twisted.inlineCallbacks
def test_the_runner_dials_the_phones_of_its_file(tmp_path):
    sink, journal = DrillKeypadSink(), MemoryJournal(reactor)
    agi = reactor.listenTCP(0, make_fastagi_factory(reactor, sink=sink, journal=journal,
                                                    settings=MenuSettings(timeout_ms=200)),
                            interface="127.0.0.1")
    phones = tmp_path / "phones.yaml"
    phones.write_text('default: {action: nosuch}\n'
                      'phones:\n  "+447700900001": {moves: ["2"], after: 0.1}\n'
                      '  "+447700900003": {action: busy, ring: 0.05}\n')
    child = Child()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = reactor.spawnProcess(child, sys.executable, [
        sys.executable, "-m", "gateway.ami.emulator.pbx", "--ami-port", "0", "--agi",
        f"127.0.0.1:{agi.getHost().port}", "--phones", str(phones), "--secret", AMI_SECRET,
        "--prompt-seconds", "0.05"],
        env=env, path=str(REPO))
    link = None
    try:
        yield wait_for(reactor, lambda: re.search(rb"AMI on 127\.0\.0\.1:(\d+)", child.err), 10,
                       what="the runner's AMI port")
        port = int(re.search(rb"AMI on 127\.0\.0\.1:(\d+)", child.err).group(1))
        link = AmiLink(reactor, "127.0.0.1", port, username="gateway", secret=AMI_SECRET,
                       backoff_initial=0.05)
        link.startService()
        yield link.when_ready().addTimeout(5, reactor)

        def order_call(national):
            return link.originate(f"PJSIP/{national}@trunk", context="gateway-out", exten="order",
                                  variables={"ORDER_CODE": "0427", "YIHU_PHONE": "+447700900001"},
                                  channel_id=f"yihu-order-0427-1-{national[-1]}",
                                  timeout_ms=500).addTimeout(5, reactor)
        answered = yield order_call("07700900001")
        assert (answered.success, answered.reason) == (True, 4)
        yield wait_for(reactor, lambda: sink.answers, 5, what="the keypad answer")
        assert [(a.digit, a.order_code, a.call_id) for a in sink.answers] == \
            [("2", "0427", "yihu-order-0427-1-1")]
        busy = yield order_call("07700900003")
        assert (busy.success, busy.reason) == (False, 5)
        nosuch = yield order_call("07700900009")
        assert (nosuch.success, nosuch.reason) == (False, 0)
    finally:
        if link is not None:
            yield link.stopService()
        if child.ended.called is False:
            proc.signalProcess("TERM")
        yield child.ended.addTimeout(5, reactor)
        yield agi.stopListening()
