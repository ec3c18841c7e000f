"""A reply committed but not yet judged when the gateway stopped is judged after the restart."""
import pytest_twisted
from twisted.internet import reactor

from sms.inbound import InboundProcessor
from sms.store import SqlStore


class Sink:
    def __init__(self):
        self.got = []

    def sms_received(self, sms):
        self.got.append(sms)


@pytest_twisted.inlineCallbacks
def test_unjudged_reply_is_handed_over_at_start_and_only_once(database):
    store = SqlStore(database)
    rid, dup = yield store.store_inbound(reactor.seconds(), channel="sms", source="/dev/ttyUSB0",
                                         sender="+447700900019", raw=b"0791...", text="0427 到达", state="new")
    assert dup is None
    sink = Sink()
    yield InboundProcessor(reactor, store, sink).start()          # the gateway after its restart
    assert [(s.raw_id, s.sender, s.text, s.modem) for s in sink.got] == [(rid, "+447700900019", "0427 到达",
                                                                          "/dev/ttyUSB0")]
    assert sink.got[0].received_at.tzinfo is not None
    yield store.update_inbound(rid, state="parsed")               # what the feedback engine does
    again = Sink()
    yield InboundProcessor(reactor, store, again).start()
    assert again.got == []
