"""The nuisance notice: a listed number with its notice on hears its own prompt at the overflow
point, in place of the usual message (never in addition: the caller is out of the queue no
longer than anyone).  The list is answered from memory; when it cannot be reloaded the last one
stays."""
from datetime import datetime, timezone

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from gateway.hotline import nuisance
from ivr.drill import DrillKeypadSink
from ivr.emulator import EmulatedChannel, ScriptedCaller, agi_environment
from ivr.emulator.inmemory import InMemoryCall
from ivr.journal import MemoryJournal
from ivr.nuisance_notice import NuisanceNotices
from ivr.service import make_fastagi_factory

LISTED = "13905761111"


def overflow(callerid, notice_for):
    clock = Clock()
    factory = make_fastagi_factory(clock, sink=DrillKeypadSink({}), journal=MemoryJournal(clock),
                                   nuisance_notice=notice_for)
    channel = EmulatedChannel(caller=ScriptedCaller([]), callerid=callerid)
    call = InMemoryCall(factory, agi_environment("overflow?line=110", callerid=callerid), channel, clock)
    return call, channel


class Notices(NuisanceNotices):
    def __init__(self, keys):
        super().__init__(Clock(), None)
        self.keys = frozenset(keys)


def test_a_listed_caller_hears_the_notice_instead_of_the_overflow_message():
    notices = Notices({LISTED})
    mem, channel = overflow("+86 139 0576 1111", notices)
    assert channel.commands == ['STREAM FILE yihu/hotline-nuisance ""']
    assert mem.closed_by_gateway and channel.alive           # back to the dialplan, i.e. the queue
    mem, channel = overflow("13905762222", notices)
    assert channel.commands == ['STREAM FILE yihu/hotline-overflow ""']


def test_notice_off_withheld_number_or_a_broken_list_plays_the_usual_message():
    off = Notices({LISTED})
    off.enabled = False
    assert overflow(LISTED, off)[1].commands == ['STREAM FILE yihu/hotline-overflow ""']
    assert overflow("anonymous", Notices({LISTED}))[1].commands == ['STREAM FILE yihu/hotline-overflow ""']

    def broken(_caller):
        raise RuntimeError("list unavailable")
    mem, channel = overflow(LISTED, broken)
    assert channel.commands == ['STREAM FILE yihu/hotline-overflow ""'] and mem.closed_by_gateway


@pytest_twisted.inlineCallbacks
def test_the_list_is_loaded_from_the_database_and_kept_when_it_cannot_be(database):
    now = datetime.now(timezone.utc)
    yield database.run(nuisance.add, LISTED, "谎报", "test", now, None, True)
    yield database.run(nuisance.add, "13905763333", "占线", "test", now, None, False)   # shown, no notice
    notices = NuisanceNotices(reactor, database, 30.0)
    n = yield notices.refresh()
    assert n == 1 and notices(LISTED) and not notices("13905763333")

    class Down:
        def run(self, *a, **kw):
            return defer.fail(RuntimeError("database is down"))
    notices.db = Down()
    yield notices.refresh()
    assert notices(LISTED)                                   # the last list known stays
