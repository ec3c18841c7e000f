"""A delivery is `queued` until a modem accepted its first segment; only then `sent`."""
import pytest_twisted
from sqlalchemy import select

from gateway.storage.schema import deliveries, sms_segments
from sms.store import SqlStore, add_message_tx
from tests._orders_rig import Rig, local, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)


class StoreOutbox:
    """The SMS bank's outbox without modems: the message and its segments committed, queued, in
    the fan-out's own transaction (transactional outbox)."""

    def __init__(self):
        self.calls = 0

    def stage_tx(self, conn, now, phone, text, *, purpose, order_id=None, delivery_id=None):
        self.calls += 1
        return add_message_tx(conn, now, phone, text, purpose, order_id, delivery_id)

    def adopt(self, records):
        pass


def _states(conn):
    return {r.id: r.state for r in conn.execute(select(deliveries.c.id, deliveries.c.state)
                                                .where(deliveries.c.channel == "sms"))}


@pytest_twisted.inlineCallbacks
def test_queued_until_a_modem_accepted_the_first_segment(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    store = SqlStore(database)
    rig.fanout.outbox = StoreOutbox()
    try:
        yield rig.send(teams_=("PUB-01",))
        states = yield database.run(_states)
        assert sorted(states.values()) == ["queued", "queued"]       # in the outbox, no modem yet
        assert rig.fanout.outbox.calls == 2
        yield rig.fanout.send()                                       # the sweep never hands them twice
        assert rig.fanout.outbox.calls == 2
        segs = yield database.run(lambda c: c.execute(select(sms_segments.c.id, sms_segments.c.message_id)).all())
        first = segs[0]
        yield store.save(rig.clock.seconds(), [("segment", first.id, {"state": "submitting"})])
        assert sorted((yield database.run(_states)).values()) == ["queued", "queued"]
        yield store.save(rig.clock.seconds(), [("segment", first.id, {"state": "sent", "mr": 7})])
        states = yield database.run(_states)
        assert sorted(states.values()) == ["queued", "sent"]           # exactly the one a modem accepted
        other = next(s for s in segs if s.message_id != first.message_id)
        yield store.save(rig.clock.seconds(), [("segment", other.id, {"state": "failed"})])
        assert sorted((yield database.run(_states)).values()) == ["failed", "sent"]
    finally:
        rig.stop()
