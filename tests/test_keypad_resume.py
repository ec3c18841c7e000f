"""A keypad answer committed raw but never judged (the gateway stopped in between) is judged at
the next start, once: the team's state moves and the commander is confirmed."""
import pytest_twisted
from sqlalchemy import insert, select

from gateway.storage.schema import inbound_raw, order_teams
from ivr.journal import resume_unjudged_keypad
from tests._orders_rig import Rig, local, phone, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)


@pytest_twisted.inlineCallbacks
def test_unjudged_keypad_answer_is_judged_at_start_once(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    try:
        order = yield rig.send(teams_=("PUB-01",))

        def keyed(conn):         # what the order flow commits before the feedback engine sees it
            return conn.execute(insert(inbound_raw).values(
                channel="keypad", source="yihu-order-x-1", sender=phone(1, "commander"), raw=b"1", text="1",
                received_at=T0, state="new", meta={"script": "order", "order_code": order.code})).inserted_primary_key[0]
        raw_id = yield database.run(keyed)
        n = yield resume_unjudged_keypad(database, rig.feedback)        # the next start
        assert n == 1
        state = yield database.run(lambda c: c.execute(select(order_teams.c.state)).scalar())
        raw = yield database.run(lambda c: c.execute(select(inbound_raw.c.state).where(inbound_raw.c.id == raw_id))
                                 .scalar())
        assert state == "received" and raw == "parsed"
        assert len(rig.outbox.to(phone(1, "commander"), "confirmation")) == 1
        # The start after that finds nothing to judge: nobody is told twice.
        assert (yield resume_unjudged_keypad(database, rig.feedback)) == 0
        assert len(rig.outbox.to(phone(1, "commander"), "confirmation")) == 1
    finally:
        rig.stop()
