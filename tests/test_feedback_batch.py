"""A group-commit batch reads what it needs once, and its later answers see what earlier ones wrote."""
from datetime import timedelta, timezone

import pytest_twisted
from sqlalchemy import select

from gateway.escalation.config import EscalationConfig
from gateway.feedback import store
from gateway.orders.grammar import parse_reply
from gateway.storage.schema import escalation_steps, inbound_raw, order_teams, teams
from tests._orders_rig import Rig, local, phone, raw_tx, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def states_by_team_tx(conn):
    return dict(conn.execute(select(teams.c.code, order_teams.c.state)
                             .join(teams, teams.c.id == order_teams.c.team_id)).all())


def raw_states_tx(conn):
    return dict(conn.execute(select(inbound_raw.c.id, inbound_raw.c.state)).all())


def earliest_pending_tx(conn):
    """order team -> its earliest pending escalation step (read here, not by the code under test)."""
    out = {}
    for ot, due in conn.execute(select(escalation_steps.c.order_team_id, escalation_steps.c.due_at)
                                .where(escalation_steps.c.state == "pending")):
        due = due if due.tzinfo else due.replace(tzinfo=timezone.utc)
        out[ot] = min(out.get(ot, due), due)
    return out


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
        # Each answer carries its team's next step due, as committed (the escalation timer's).
        due = yield database.run(earliest_pending_tx)
        assert verdicts[0].next_due is not None
        assert [v.next_due for v in verdicts[:2]] == [due[verdicts[0].order_team_id]] * 2
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


def _events_of_tx(conn, order_id):
    from gateway.storage.schema import event_log
    return [r.kind for r in conn.execute(select(event_log.c.kind, event_log.c.payload).order_by(event_log.c.id))
            if (r.payload or {}).get("order_id") == order_id]


@pytest_twisted.inlineCallbacks
def test_a_batch_judges_stages_and_records_as_one_by_one(database):
    """Major order, situation report, finish with the form asked, a form field, a leader's note, a
    refusal with help text, a duplicate: one batch does what the same answers one at a time do
    (verdicts, replies staged in the transaction, events in order, raw states)."""
    from sqlalchemy import insert
    from gateway.storage.schema import leaders
    yield database.run(seed_directory_tx, 3)
    yield database.run(lambda c: c.execute(insert(leaders).values(name="林总", role="commander_in_chief",
                                                                  e164="+8613700000001", active=True,
                                                                  created_at=T0)))
    rig = Rig(database, T0)
    yield rig.start()
    try:
        a = yield rig.send(teams_=("PUB-01",), major=True)
        b = yield rig.send(teams_=("PUB-02",), major=True)

        def script(code, team_no):
            cmd, dep = phone(team_no, "commander"), phone(team_no, "deputy")
            return [(cmd, f"{code} 到达", 10), (dep, f"{code} 续报 已转移群众30人", 15),
                    (cmd, f"{code} 3 房屋加固完成", 30), (dep, f"{code} 责任单位：白塔镇", 31),
                    ("+8613700000001", f"{code} 请注意救援人员安全", 32), (cmd, f"{code} 1", 33),      # late: recorded, changes nothing
                    (dep, "乱码", 34)]

        def staged_of(log):
            def stage(conn, now, phone_, text, *, purpose, order_id=None):
                log.append((purpose, text))
                return {"phone": phone_}
            return stage


        batch = []
        for who, text, minutes in script(a.code, 1):
            rid = yield database.run(raw_tx, "sms", who, text, at(minutes))
            batch.append(answer(who, text, minutes, rid))
        batch.append(batch[0])                       # handed twice
        staged_a: list = []
        va = yield database.run(store.record_batch_tx, batch, rig.cfg, staged_of(staged_a))
        staged_b: list = []
        vb = []
        singles = []
        for who, text, minutes in script(b.code, 2):
            rid = yield database.run(raw_tx, "sms", who, text, at(minutes))
            singles.append(answer(who, text, minutes, rid))
        singles.append(singles[0])
        for s in singles:
            vb.append((yield database.run(store.record_one_tx, s, rig.cfg, staged_of(staged_b))))

        def norm(x, code, team_no):
            return (x or "").replace(code, "CODE").replace(f"第{team_no}救援队", "TEAM")
        assert [v.outcome for v in va] == [v.outcome for v in vb]
        assert [v.outcome for v in va] == ["recorded", "recorded", "recorded", "recorded", "note",
                                           "recorded", "garbage", "duplicate"]
        assert [v.status for v in va] == [v.status for v in vb]
        assert [norm(v.message, a.code, 1) for v in va] == [norm(v.message, b.code, 2) for v in vb]
        assert [(p, norm(t, a.code, 1)) for p, t in staged_a] == [(p, norm(t, b.code, 2)) for p, t in staged_b]
        assert [v.staged for v in va[:-1]] and all(v.staged for v in va[:-1]) and va[-1].staged == []
        ka = yield database.run(_events_of_tx, va[0].order_id)
        kb = yield database.run(_events_of_tx, vb[0].order_id)
        assert [k for k in ka if k != "order.created"] == [k for k in kb if k != "order.created"]
        assert {"order.feedback", "order.situation_report", "order.form", "order.note"} <= set(ka)
        raw = yield database.run(raw_states_tx)
        assert [raw[x.raw_id] for x in batch] == [raw[x.raw_id] for x in singles]
    finally:
        rig.stop()
