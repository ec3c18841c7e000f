"""End to end on the emulated PBX: a flagged number calls 110; the event log (a
`hotline.caller_history` event after `hotline.arrived`) and the board show its history, and its
call reaches the queue as fast as a first-time caller's.  The history lookup is off the call's
path: held back on purpose, the call's record and its events are still committed at every stage."""
import json
from datetime import datetime, timedelta, timezone

import pytest
import pytest_twisted
import treq
from sqlalchemy import insert
from twisted.internet import defer, reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from adapters.board import BoardResource
from gateway.ami import AmiLink
from gateway.ami.emulator.pbx import EmulatedPbx, Phone
from gateway.ami.testing import CollectingSink, wait_for
from gateway.escalation.config import EscalationConfig
from gateway.hotline import nuisance
from gateway.hotline.callers import HotlineSection
from gateway.hotline.history import caller_history_tx
from gateway.hotline.service import HotlineService
from gateway.hotline.store import get_call
from gateway.storage.schema import hotline_calls
from ivr.flows.answer_menu import MenuSettings
from ivr.journal import MemoryJournal
from ivr.drill import DrillKeypadSink
from ivr.service import make_fastagi_factory

FLAGGED = "13905761111"
FIRST_TIMER = "13905762222"


def bounded(d, seconds=10.0):
    return d.addTimeout(seconds, reactor)


def seed_history(conn):
    """FLAGGED called four times in the last two days, three of them pranks."""
    now = datetime.now(timezone.utc)
    rows = []
    for k, (hours, valid, cat) in enumerate([(1, False, "prank"), (3, False, "prank"), (30, False, "silent"),
                                             (40, True, "police")]):
        at = now - timedelta(hours=hours)
        rows.append(dict(call_id=f"old-{k}", line="110", caller=FLAGGED, arrived_at=at, outcome="answered",
                         answered_at=at + timedelta(seconds=4), ended_at=at + timedelta(seconds=40), valid=valid,
                         category=cat, updated_at=at))
    conn.execute(insert(hotline_calls), rows)
    nuisance.add(conn, FLAGGED, "多次谎报", "test", now, None, True)


class GatedDb:
    """The real Database, except that caller-history lookups wait until the gate opens."""

    def __init__(self, db):
        self.db = db
        self.gate = defer.Deferred()

    def run(self, fn, *args, **kw):
        if fn is caller_history_tx:
            d = defer.Deferred()
            self.gate.addCallback(lambda _: self.db.run(fn, *args, **kw).chainDeferred(d))
            return d
        return self.db.run(fn, *args, **kw)


@pytest.fixture
def pbx():
    factory = make_fastagi_factory(reactor, sink=DrillKeypadSink({}), journal=MemoryJournal(reactor),
                                   settings=MenuSettings(timeout_ms=200), hotline_triage_ms=100)
    agi = reactor.listenTCP(0, factory, interface="127.0.0.1")
    p = EmulatedPbx(reactor, agi_host="127.0.0.1", agi_port=agi.getHost().port, default=Phone.missing(),
                    agi_idle_timeout=5)
    p.listen(0, "127.0.0.1")
    yield p
    pytest_twisted.blockon(p.stop())
    pytest_twisted.blockon(defer.maybeDeferred(agi.stopListening))


@defer.inlineCallbacks
def start_hotline(pbx, db, cfg, database):
    sink = CollectingSink()
    database.add_event_listener(sink.committed)       # what the event stream and webhooks are told, after COMMIT
    link = AmiLink(reactor, "127.0.0.1", pbx.port_number, username="gateway", secret="rig-secret",
                   action_timeout=2, backoff_initial=0.05, backoff_max=0.3)
    svc = HotlineService(reactor, db, link, callers=cfg)
    svc.startService()
    yield bounded(svc.ready)
    link.startService()
    yield bounded(link.when_ready(), 5)
    return svc, sink, link


def events_of(sink, call):
    return [(k, p) for k, p in sink.events if p.get("call_id") == call.info.get("linkedid")]


def history_of(sink, call):
    found = [p["caller_history"] for k, p in events_of(sink, call) if k == "hotline.caller_history"]
    return found[0] if found else None


@defer.inlineCallbacks
def board_html(database, time_zone="Asia/Shanghai"):
    """GET /board, as the wall screen does."""
    root = Resource()
    root.putChild(b"board", BoardResource(reactor, database, EscalationConfig(), time_zone, callers=HotlineSection()))
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    try:
        resp = yield bounded(treq.get(f"http://127.0.0.1:{port.getHost().port}/board"), 5)
        assert resp.code == 200
        return (yield treq.text_content(resp, encoding="utf-8"))
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_flagged_caller_is_shown_and_queued_as_fast_as_anyone(pbx, database):
    yield database.run(seed_history)
    svc, sink, link = yield start_hotline(pbx, database, HotlineSection(), database)
    try:
        flagged = pbx.hotline_call("110", FLAGGED, outcome="answered", queue_seconds=1.5, talk_seconds=0.2, speed=4)
        other = pbx.hotline_call("110", FIRST_TIMER, outcome="answered", queue_seconds=1.5, talk_seconds=0.2, speed=4)
        yield wait_for(reactor, lambda: history_of(sink, flagged) and history_of(sink, other), 5,
                       what="hotline.caller_history")
        kinds = [k for k, _ in events_of(sink, flagged)]
        assert kinds[0] == "hotline.arrived" and "hotline.caller_history" in kinds   # the call first, then its history
        h = history_of(sink, flagged)
        assert h["number"] == FLAGGED
        assert (h["calls_24h"], h["calls_30d"], h["flags"]) == (2, 4, ["repeat", "often_invalid"])
        assert h["marks"]["invalid_categories"] == {"prank": 2, "silent": 1} and h["nuisance"]["reason"] == "多次谎报"
        assert history_of(sink, other)["flags"] == []
        json.dumps(h)                           # as the event stream and webhooks serialise it: plain JSON
        # while both ring, the wall shows the flagged one's history
        yield wait_for(reactor, lambda: database.run_sync(get_call, flagged.info["linkedid"])["queue_joined_at"],
                       5, what="the flagged call in the queue")
        html = yield board_html(database)
        assert "****" + FLAGGED[-4:] in html and "重复来电" in html   # the wall sees the last four digits
        assert "多次无效" in html and FLAGGED not in html
        assert "骚扰名单：多次谎报" in html
        assert "****" + FIRST_TIMER[-4:] not in html               # an unflagged caller takes no room
        assert "今日热线" in html and "有效率" in html and "标记占比" in html
        yield bounded(defer.gatherResults([flagged.ended, other.ended]))
        yield wait_for(reactor, lambda: all("hotline.ended" in [k for k, _ in events_of(sink, c)]
                                            for c in (flagged, other)), 5, what="hotline.ended")
        yield bounded(svc.flushed())
        rows = [database.run_sync(get_call, c.info["linkedid"]) for c in (flagged, other)]
        waits = [(r["queue_joined_at"] - r["arrived_at"]).total_seconds() for r in rows]
        assert rows[0]["outcome"] == rows[1]["outcome"] == "answered"
        assert abs(waits[0] - waits[1]) < 0.25, waits             # the flag cost the caller nothing
        assert rows[0]["caller_flag"] == "repeat,often_invalid" and rows[1]["caller_flag"] is None
        # one history event per call, however many events the call had
        assert [k for k, _ in events_of(sink, flagged)].count("hotline.caller_history") == 1
    finally:
        yield link.stopService()


@pytest_twisted.inlineCallbacks
def test_a_stuck_history_lookup_never_holds_the_call_or_its_record(pbx, database):
    yield database.run(seed_history)
    gated = GatedDb(database)
    svc, sink, link = yield start_hotline(pbx, gated, HotlineSection(), database)
    try:
        call = pbx.hotline_call("110", FLAGGED, outcome="answered", queue_seconds=0.3, talk_seconds=0.2, speed=4)
        yield bounded(call.ended)                       # the PBX ran the whole call: IVR, queue, answer, hang-up
        yield wait_for(reactor, lambda: (database.run_sync(get_call, call.info.get("linkedid") or "-") or {})
                       .get("outcome") == "answered", 5, what="the record of the answered call")
        row = database.run_sync(get_call, call.info["linkedid"])
        assert row["queue_joined_at"] and row["answered_at"] and row["ended_at"]
        yield wait_for(reactor, lambda: len(events_of(sink, call)) == 3, 5, what="the call's events")
        # the call's events are committed with its record: none waits for the history
        assert [k for k, _ in events_of(sink, call)] == ["hotline.arrived", "hotline.answered", "hotline.ended"]
        assert row["caller_flag"] is None
        gated.gate.callback(None)
        yield wait_for(reactor, lambda: history_of(sink, call), 5, what="the history, once the lookup ends")
        assert history_of(sink, call)["flag"] == "repeat,often_invalid"
        assert database.run_sync(get_call, call.info["linkedid"])["caller_flag"] == "repeat,often_invalid"
        yield bounded(svc.flushed())
    finally:
        yield link.stopService()
