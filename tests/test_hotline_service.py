"""The hotline service's write path, on a fake clock and a database that fails: a record and
its events commit together, writes for a call are coalesced, failures are retried."""
from twisted.internet import defer
from twisted.internet.task import Clock

from gateway.hotline.service import HotlineService
from gateway.hotline.tracker import HotlineCall


class FlakyDb:
    """Database.run look-alike: fails the first `fail` writes; commits are explicit."""

    def __init__(self, fail=0):
        self.fail = fail
        self.pending: list[tuple[defer.Deferred, HotlineCall]] = []
        self.committed: dict[str, HotlineCall] = {}
        self.events: list[tuple[str, dict]] = []      # committed with the record, in order
        self.calls = 0

    def run(self, fn, call, kinds, at):
        self.calls += 1
        self.written_at = at          # the service's injected clock, never the wall's
        d = defer.Deferred()
        self.pending.append((d, call, list(kinds)))
        return d

    def finish_one(self):
        d, call, kinds = self.pending.pop(0)
        if self.fail:
            self.fail -= 1
            d.errback(RuntimeError("database is down"))
        else:
            self.committed[call.call_id] = call
            self.events += [(f"hotline.{k}", {"call_id": call.call_id}) for k in kinds]
            d.callback(1)


def make(fail=0):
    clock = Clock()
    db = FlakyDb(fail)
    svc = HotlineService(clock, db, clock=clock)
    return svc, db, db, clock


def test_events_commit_with_the_record_and_writes_coalesce():
    svc, db, sink, clock = make()
    clock.advance(1234.5)
    call = HotlineCall(call_id="1.1", line="110", arrived_at=1.0, uniqueid="1.1")
    svc._changed(call, ("arrived",))
    assert db.written_at.timestamp() == 1234.5        # the record's time is the injected clock's
    call.answered_at = 5.0
    svc._changed(call, ("answered",))
    call.outcome, call.ended_at = "answered", 9.0
    svc._changed(call, ("ended",))
    assert sink.events == [] and len(db.pending) == 1       # one write in flight per call
    db.finish_one()
    assert [k for k, _ in sink.events] == ["hotline.arrived"]
    assert len(db.pending) == 1                              # the newest state, once
    db.finish_one()
    assert [k for k, _ in sink.events] == ["hotline.arrived", "hotline.answered", "hotline.ended"]
    assert db.committed["1.1"].outcome == "answered" and db.calls == 2


def test_failed_writes_are_retried_and_their_events_kept_in_order():
    svc, db, sink, clock = make(fail=2)
    call = HotlineCall(call_id="2.1", line="119", arrived_at=1.0, uniqueid="2.1")
    svc._changed(call, ("arrived",))
    db.finish_one()                      # fails
    call.outcome, call.ended_at = "abandoned_ivr", 3.0
    svc._changed(call, ("abandoned", "ended"))
    assert db.pending == [] and sink.events == []
    clock.advance(0.5)
    db.finish_one()                      # fails again
    clock.advance(0.9)
    assert db.pending == []              # backing off: 1 s now
    clock.advance(0.2)
    db.finish_one()                      # commits the latest state
    assert [k for k, _ in sink.events] == ["hotline.arrived", "hotline.abandoned", "hotline.ended"]
    assert db.committed["2.1"].outcome == "abandoned_ivr"
    done = svc.flushed()
    assert done.called
