"""Units of work that arrive together are committed together; each is told after its commit, and
one that fails sinks none of the others."""
from datetime import datetime, timezone

import pytest
import pytest_twisted
from sqlalchemy import func, insert, select
from twisted.internet import defer

from gateway.storage.group import GroupCommit
from gateway.storage.schema import inbound_raw


def keep_tx(conn, text):
    if text == "bad":
        raise ValueError("refused unit")
    return conn.execute(insert(inbound_raw).values(channel="keypad", text=text, state="new",
                                                   received_at=datetime.now(timezone.utc))).inserted_primary_key[0]


def texts_tx(conn):
    return dict(conn.execute(select(inbound_raw.c.id, inbound_raw.c.text)).all())


@pytest_twisted.inlineCallbacks
def test_units_arriving_together_share_a_commit_and_each_gets_its_own_result(database):
    transactions = []
    real_run = database.run

    def counting_run(fn, *args):
        transactions.append(fn)
        return real_run(fn, *args)
    database.run = counting_run
    group = GroupCommit(database, "test", max_batch=5)
    ids = yield defer.gatherResults([group.run(keep_tx, f"key {i}") for i in range(12)])
    database.run = real_run
    # the first alone (nothing was in flight), then batches of at most 5: 1 + 5 + 5 + 1
    assert len(transactions) == 4
    stored = yield database.run(texts_tx)
    assert [stored[i] for i in ids] == [f"key {i}" for i in range(12)]
    assert (yield database.run(lambda c: c.execute(select(func.count()).select_from(inbound_raw)).scalar())) == 12


@pytest_twisted.inlineCallbacks
def test_a_failing_unit_sinks_none_of_the_others(database):
    group = GroupCommit(database, "test")
    ds = [group.run(keep_tx, t) for t in ("first", "a", "bad", "b")]
    results = yield defer.DeferredList(ds, consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True, False, True]
    results[2][1].trap(ValueError)
    stored = yield database.run(texts_tx)
    assert sorted(stored.values()) == ["a", "b", "first"]
    with pytest.raises(ValueError):
        yield group.run(keep_tx, "bad")
