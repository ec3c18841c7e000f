"""A group-commit batch reads what it needs once, and its later answers see what earlier ones wrote."""
from datetime import timedelta

import pytest_twisted
from sqlalchemy import select

from gateway.escalation.config import EscalationConfig
from gateway.feedback import store
from gateway.orders.grammar import parse_reply
from gateway.storage.schema import inbound_raw, order_teams, teams
from tests._orders_rig import Rig, local, phone, raw_tx, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def states_by_team_tx(conn):
    return dict(conn.execute(select(teams.c.code, order_teams.c.state)
                             .join(teams, teams.c.id == order_teams.c.team_id)).all())


def raw_states_tx(conn):
    return dict(conn.execute(select(inbound_raw.c.id, inbound_raw.c.state)).all())


def answer(who, text, minutes, raw_id):
    return store.Answer("sms", who, parse_reply(text), at(minutes), raw_id, text)


@pytest_twisted.inlineCallbacks
def test_answers_in_one_batch_build_on_each_other(database):
    yield database.run(seed_directory_tx, 3)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01", "PUB-02"))
        code = order.code
        cmd, dep = phone(1, "commander"), phone(1, "deputy")
        r1 = yield database.run(raw_tx, "sms", cmd, f"{code} 1", at(1))
        r2 = yield database.run(raw_tx, "sms", dep, f"{code} 2", at(2))
        r3 = yield database.run(raw_tx, "sms", phone(3, "commander"), f"{code} 1", at(2))
        r4 = yield database.run(raw_tx, "sms", "+8613100000000", f"{code} 1", at(2))
        batch = [answer(cmd, f"{code} 1", 1, r1),
                 answer(dep, f"{code} 2", 2, r2),           # the same team: sees the commander's answer
                 answer(cmd, f"{code} 1", 1, r1),           # handed twice in one batch: judged once
                 answer(phone(3, "commander"), f"{code} 1", 2, r3),     # a team the order was not sent to
                 answer("+8613100000000", f"{code} 1", 2, r4)]          # not on the roster
        verdicts = yield database.run(store.record_batch_tx, batch, EscalationConfig())
        assert [v.outcome for v in verdicts] == ["recorded", "recorded", "duplicate", "refused", "refused"]
        assert [v.status for v in verdicts[:2]] == ["received", "arrived"]
        assert (yield database.run(states_by_team_tx)) == {"PUB-01": "arrived", "PUB-02": "sent"}
        raw = yield database.run(raw_states_tx)
        assert [raw[r] for r in (r1, r2, r3, r4)] == ["parsed", "parsed", "refused", "refused"]
        # One alone (the path a failed batch falls back to) judges the same way.
        r5 = yield database.run(raw_tx, "sms", phone(2, "commander"), f"{code} 1", at(3))
        alone = yield database.run(store.record_answer_tx, answer(phone(2, "commander"), f"{code} 1", 3, r5),
                                   EscalationConfig())
        assert (alone.outcome, alone.status, alone.team_code) == ("recorded", "received", "PUB-02")
    finally:
        rig.stop()
