"""An order-call keypress and what the feedback engine makes of it share one COMMIT: the raw
keypress, the answer recorded and the confirmation SMS staged (FeedbackEngine.keypad_answer_journalled).
Durable before acknowledged still holds: if that transaction fails, the keypress is committed raw
alone first, then judged by itself; if even the raw row cannot be written, neither is told done."""
from contextlib import asynccontextmanager

import pytest
import pytest_twisted
from sqlalchemy import func, select
from twisted.logger import globalLogPublisher

from gateway.feedback import store
from gateway.interfaces import KeypadAnswer
from gateway.storage.schema import feedback, inbound_raw, order_teams
from ivr.journal import KeypadEntry, KeypadJournal
from tests._orders_rig import Rig, local, phone, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)


def keypad_rows_tx(conn):
    return [dict(r._mapping) for r in conn.execute(
        select(inbound_raw.c.id, inbound_raw.c.state, inbound_raw.c.text, inbound_raw.c.sender)
        .where(inbound_raw.c.channel == "keypad").order_by(inbound_raw.c.id))]


def team_state_tx(conn):
    return conn.execute(select(order_teams.c.state)).scalar()


def feedback_count_tx(conn):
    return conn.execute(select(func.count()).select_from(feedback)).scalar()


def keyed(rig, journal, code, digits="1"):
    """What the order flow hands the engine for key `digits` (ivr/flows/answer_menu.py)."""
    caller = phone(1, "commander")
    entry = KeypadEntry(call_id="yihu-order-x-1", caller=caller, digits=digits, script="order", state="new",
                        order_code=code)
    answer = KeypadAnswer(None, caller, digits or "?", "yihu-order-x-1", rig.now(), code)
    return rig.feedback.keypad_answer_journalled(answer, journal, entry)


@asynccontextmanager
async def order_to_one_team(database):
    """A rig with one team on the roster and an order sent to it: (rig, the order's code)."""
    await database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    try:
        order = await rig.send(teams_=("PUB-01",))
        yield rig, order.code
    finally:
        rig.stop()


async def assert_received_and_confirmed(database, rig):
    """The team's state is "received" and its commander got one confirmation SMS."""
    assert await database.run(team_state_tx) == "received"
    assert len(rig.outbox.to(phone(1, "commander"), "confirmation")) == 1


class Transactions:
    """Counts the units of work the database runs (one transaction each)."""

    def __init__(self, db):
        self.db, self.count, self._run = db, 0, db.run
        db.run = self.run

    def run(self, fn, *args, **kwargs):
        self.count += 1
        return self._run(fn, *args, **kwargs)

    def close(self):
        del self.db.run


@pytest_twisted.ensureDeferred
async def test_the_keypress_its_answer_and_the_confirmation_commit_together(database):
    async with order_to_one_team(database) as (rig, code):
        txs = Transactions(database)
        logged = []
        globalLogPublisher.addObserver(logged.append)
        try:
            journalled, judged = keyed(rig, KeypadJournal(rig.clock, database), code)
            raw_id = await journalled
            at_journalled = txs.count
            outcome = await judged
            at_judged = txs.count
        finally:
            txs.close()
            globalLogPublisher.removeObserver(logged.append)
        # the engine's line names the keypress's raw row, written in that same transaction
        assert [e.get("raw") for e in logged if e.get("log_format", "").startswith("feedback order")] == [raw_id]
        assert (at_journalled, at_judged) == (1, 1)         # one transaction held all three
        assert outcome.accepted and outcome.status == "received"
        [row] = await database.run(keypad_rows_tx)
        assert (row["id"], row["text"], row["sender"], row["state"]) == (raw_id, "1", phone(1, "commander"), "parsed")
        await assert_received_and_confirmed(database, rig)


@pytest_twisted.ensureDeferred
async def test_a_failed_judgement_leaves_the_keypress_committed_raw_then_judged_alone(database, monkeypatch):
    real = store.record_batch_tx
    calls = []

    def fails_once(conn, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("judging failed")      # rolls back the raw row written with it
        return real(conn, *args, **kwargs)
    async with order_to_one_team(database) as (rig, code):
        monkeypatch.setattr(store, "record_batch_tx", fails_once)
        journalled, judged = keyed(rig, KeypadJournal(rig.clock, database), code)
        raw_id = await journalled
        [row] = await database.run(keypad_rows_tx)          # committed raw, once
        assert row["id"] == raw_id
        outcome = await judged
        assert outcome.accepted and len(calls) == 2
        assert [r["state"] for r in await database.run(keypad_rows_tx)] == ["parsed"]
        await assert_received_and_confirmed(database, rig)


@pytest_twisted.ensureDeferred
async def test_a_keypress_that_cannot_be_written_is_neither_journalled_nor_judged(database):
    async with order_to_one_team(database) as (rig, code):
        journalled, judged = keyed(rig, KeypadJournal(rig.clock, database), code, digits=None)
        with pytest.raises(AttributeError):
            await journalled
        with pytest.raises(AttributeError):
            await judged
        assert await database.run(keypad_rows_tx) == []
        assert await database.run(feedback_count_tx) == 0
        assert rig.outbox.to(phone(1, "commander"), "confirmation") == []
