"""The batch writers (gateway/storage/bulk.py) leave exactly the rows an INSERT/UPDATE per row would:
on PostgreSQL they go by COPY and UPDATE .. FROM unnest(..), so every awkward value a reply can
carry (tabs, newlines, backslashes, NUL in raw bytes, Chinese JSON, NULLs, aware datetimes) and the
columns' own defaults are checked here, read back with plain SELECTs, on both backends; and again
held by `together` (sent as one pipeline, INSERT .. SELECT FROM unnest(..) standing for COPY)."""
from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from gateway.storage import Database
from gateway.storage.bulk import bulk_insert, bulk_update, draw_ids, insert_returning_ids, together
from gateway.storage.schema import (audit_log, escalation_steps, inbound_raw, order_teams, orders, sms_messages,
                                    sms_segments)
from tests._orders_rig import seed_directory_tx
from tests._pg import written_on_server

T0 = datetime(2026, 7, 1, 8, 30, 15, 123000, tzinfo=timezone.utc)
AWKWARD = ["到达现场\t0427", "line one\nline two\r\n", "back\\slash \\N and \\x41", "", "quote ' \" 【】"]


def run(url, fn, held=False):
    """fn(conn) in one transaction; held: its bulk writes inside bulk.together."""
    db = Database(None, url)

    def unit(conn):
        with together(conn) if held else contextlib.nullcontext():
            return fn(conn)
    try:
        return db.run_sync(unit)
    finally:
        db.engine.dispose()


HELD = pytest.mark.parametrize("held", [False, True], ids=["one-by-one", "held"])


@HELD
def test_inserted_rows_read_back_exactly_with_their_ids_in_order(migrated_url, held):
    raws = [bytes([0, 10, 13, 92, 9, 255, 0x22]) + s.encode() for s in AWKWARD]

    def write(conn):
        ids = insert_returning_ids(conn, inbound_raw, [
            dict(channel="sms", source="/dev/ttyUSB0", sender="+8613800000001", raw=r, raw_sha256=None, text=s,
                 received_at=T0 + timedelta(seconds=i), state="new", note=None,
                 meta={"modem": "槽位 3", "n": i, "parts": [1, 2]})
            for i, (r, s) in enumerate(zip(raws, AWKWARD))])
        bulk_insert(conn, audit_log, [dict(at=T0, actor=f"sms:+86{i}", action="feedback.recorded", subject=s,
                                           detail={"status": "arrived", "report": s, "none": None})
                                      for i, s in enumerate(AWKWARD)])
        return ids
    ids = run(migrated_url, write, held)
    assert len(ids) == len(AWKWARD) == len(set(ids))

    def read(conn):
        rows = {r.id: r for r in conn.execute(select(inbound_raw))}
        audits = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
        return rows, audits
    rows, audits = run(migrated_url, read)
    for i, id_ in enumerate(ids):           # the i-th id is the i-th row
        r = rows[id_]
        assert (bytes(r.raw), r.text, r.state, r.note) == (raws[i], AWKWARD[i], "new", None)
        assert r.received_at == T0 + timedelta(seconds=i) and r.received_at.tzinfo is not None
        assert r.meta == {"modem": "槽位 3", "n": i, "parts": [1, 2]}
    assert [(a.actor, a.subject, a.detail["report"], a.detail["none"]) for a in audits] == \
        [(f"sms:+86{i}", s, s, None) for i, s in enumerate(AWKWARD)]
    assert all(a.at == T0 for a in audits)


@HELD
def test_columns_left_out_take_their_defaults(migrated_url, held):
    def write(conn):
        (mid,) = insert_returning_ids(conn, sms_messages, [dict(phone="+8613800000001", text="收到", purpose="confirmation",
                                                                state="queued", created_at=T0, updated_at=T0)])
        insert_returning_ids(conn, sms_segments, [dict(message_id=mid, seq=1, pdu="0011", tpdu_length=2, state="queued",
                                                       updated_at=T0)])      # attempts, outcome_unknown left out
        return mid
    mid = run(migrated_url, write, held)
    seg = run(migrated_url, lambda c: c.execute(select(sms_segments).where(sms_segments.c.message_id == mid)).one())
    assert (seg.attempts, seg.outcome_unknown, seg.modem, seg.mr) == (0, 0, None, None)


def order_team_ids(url, n):
    """n order teams of one order (the steps' foreign keys), the order's defaults left to the columns."""
    def write(conn):
        team_ids = seed_directory_tx(conn, n_teams=n)
        (oid,) = insert_returning_ids(conn, orders, [dict(code="0427", incident_ref="T-1", kind="rescue", text="演练",
                                                          rule="same_township", created_at=T0)])
        return insert_returning_ids(conn, order_teams, [dict(order_id=oid, team_id=t, state="sent", state_at=T0)
                                                        for t in team_ids])
    ots = run(url, write)
    order = run(url, lambda c: c.execute(select(orders)).one())
    assert (order.voice, order.drill, order.state, order.major) == (False, False, "open", False)
    return ots


def _steps(conn, ot_ids):
    rows = []
    for ot in ot_ids:
        for stage in ("receipt", "arrival"):
            for step in (1, 2):
                rows.append(dict(order_team_id=ot, stage=stage, step=step, action="sms_again", due_at=T0,
                                 state="pending"))
    return rows


@HELD
def test_updates_match_keys_and_constants_and_one_row_per_key_wins_alike_on_both_backends(migrated_url, held):
    ots = order_team_ids(migrated_url, 2)

    def write(conn):
        insert_returning_ids(conn, escalation_steps, _steps(conn, ots))
        conn.execute(escalation_steps.update().where(escalation_steps.c.order_team_id == ots[1],
                                                     escalation_steps.c.stage == "receipt",
                                                     escalation_steps.c.step == 2).values(state="fired"))
        bulk_update(conn, escalation_steps, ("order_team_id", "stage"), [
            dict(order_team_id=ots[0], stage="receipt", state="cancelled", fired_at=T0, reason="first\tword"),
            dict(order_team_id=ots[1], stage="receipt", state="cancelled", fired_at=None, reason=None),
            dict(order_team_id=ots[0], stage="receipt", state="cancelled", fired_at=T0 + timedelta(minutes=1),
                 reason="later 到达"),
        ], where={"state": "pending"}, keep="first")
        bulk_update(conn, escalation_steps, ("order_team_id", "stage", "step"), [
            dict(order_team_id=ots[1], stage="arrival", step=1, due_at=T0, reason="moved"),
            dict(order_team_id=ots[1], stage="arrival", step=1, due_at=T0 + timedelta(hours=1), reason=None),
        ])                                                                    # keep="last"
    run(migrated_url, write, held)
    got = run(migrated_url, lambda c: {(r.order_team_id, r.stage, r.step): (r.state, r.fired_at, r.reason)
                                       for r in c.execute(select(escalation_steps))})
    first = ("cancelled", T0, "first\tword")
    assert got[(ots[0], "receipt", 1)] == first and got[(ots[0], "receipt", 2)] == first
    assert got[(ots[1], "receipt", 1)] == ("cancelled", None, None)
    assert got[(ots[1], "receipt", 2)] == ("fired", None, None)          # not pending: left alone
    assert {got[k] for k in [(ots[0], "arrival", 1), (ots[0], "arrival", 2), (ots[1], "arrival", 2)]} == \
        {("pending", None, None)}
    assert got[(ots[1], "arrival", 1)] == ("pending", None, None)
    due = run(migrated_url, lambda c: c.execute(select(escalation_steps.c.due_at).where(
        escalation_steps.c.order_team_id == ots[1], escalation_steps.c.stage == "arrival",
        escalation_steps.c.step == 1)).scalar_one())
    assert due == T0 + timedelta(hours=1)


def test_among_finds_the_same_rows_as_a_list_would_for_every_batch_size(migrated_url):
    from sqlalchemy import tuple_
    from gateway.storage.bulk import among, pairs_among
    ots = order_team_ids(migrated_url, 3)

    def read(conn):
        out = []
        for ids in ([], [ots[1]], ots, ots + [10**9]):
            got = conn.execute(select(order_teams.c.id).where(among(conn, order_teams.c.id, ids))).scalars().all()
            out.append(sorted(got))
        rows = conn.execute(select(order_teams.c.team_id, orders.c.code).join(orders)).all()
        pairs = [(rows[0].team_id, "0427"), (rows[1].team_id, "9999"), (10**9, "0427")]
        named = conn.execute(select(order_teams.c.id).join(orders).where(
            pairs_among(conn, (order_teams.c.team_id, orders.c.code), pairs))).scalars().all()
        listed = conn.execute(select(order_teams.c.id).join(orders).where(
            tuple_(order_teams.c.team_id, orders.c.code).in_(pairs))).scalars().all()
        return out, named, listed
    out, named, listed = run(migrated_url, read)
    assert out == [[], [ots[1]], sorted(ots), sorted(ots)]
    assert named == listed == [ots[0]]


def _ids_among(conn):
    from gateway.storage.bulk import among_named
    return select(order_teams.c.id).where(among_named(conn, order_teams.c.id, "ids")).order_by(order_teams.c.id)


def _ids_of_pairs(conn):
    from gateway.storage.bulk import pairs_among_named
    return select(order_teams.c.id).join(orders).where(
        pairs_among_named(conn, (order_teams.c.team_id, orders.c.code), "named")).order_by(order_teams.c.id)


def test_a_statement_built_once_finds_each_run_s_own_rows(migrated_url):
    """among_named / pairs_among_named in a statement built once: each run's values are its own
    (a statement reused with the values of the run before would answer for the wrong teams)."""
    from sqlalchemy import tuple_
    from gateway.storage.bulk import built_once, pairs_params
    ots = order_team_ids(migrated_url, 3)

    def read(conn):
        statement = built_once(conn, _ids_among)
        out = [conn.execute(statement, {"ids": ids}).scalars().all()
               for ids in ([], [ots[1]], ots, ots + [10**9], [ots[2]])]
        rows = conn.execute(select(order_teams.c.team_id, orders.c.code).join(orders)
                            .order_by(order_teams.c.id)).all()
        named = []
        for pairs in ([(rows[0].team_id, "0427"), (10**9, "0427")], [(rows[2].team_id, rows[2].code)], []):
            got = conn.execute(built_once(conn, _ids_of_pairs), pairs_params(conn, "named", 2, pairs)).scalars().all()
            listed = conn.execute(select(order_teams.c.id).join(orders).where(
                tuple_(order_teams.c.team_id, orders.c.code).in_(pairs)).order_by(order_teams.c.id)).scalars().all()
            named.append((got, listed))
        return out, named, built_once(conn, _ids_among) is statement
    out, named, same = run(migrated_url, read)
    assert out == [[], [ots[1]], sorted(ots), sorted(ots), [ots[2]]]
    assert all(got == listed for got, listed in named) and [len(g) for g, _ in named] == [1, 1, 0]
    assert same        # built once, run five times


def test_updated_text_reads_back_exactly_whatever_it_holds(migrated_url):
    awkward = AWKWARD + ["NULL", "{a,b}", 'say "到达"', "", "a\\", "x,y", " padded "]
    ots = order_team_ids(migrated_url, 1)

    def write(conn):
        ids = insert_returning_ids(conn, escalation_steps, [
            dict(order_team_id=ots[0], stage="receipt", step=i, action="sms_again", due_at=T0, state="pending")
            for i in range(len(awkward) + 1)])
        bulk_update(conn, escalation_steps, ("id",),
                    [dict(id=i, reason=r, fired_at=T0 + timedelta(seconds=n)) for n, (i, r) in enumerate(zip(ids, awkward))]
                    + [dict(id=ids[-1], reason=None, fired_at=None)])
        return ids
    ids = run(migrated_url, write)
    got = run(migrated_url, lambda c: {r.id: (r.reason, r.fired_at) for r in c.execute(select(escalation_steps))})
    assert [got[i] for i in ids] == [(r, T0 + timedelta(seconds=n)) for n, r in enumerate(awkward)] + [(None, None)]


def test_a_sparse_update_sets_each_row_s_own_columns_and_leaves_the_rest(migrated_url):
    from gateway.storage.bulk import bulk_update_sparse
    ots = order_team_ids(migrated_url, 3)
    t1 = T0 + timedelta(minutes=3)

    def write(conn):
        conn.execute(order_teams.update().where(order_teams.c.id == ots[2]).values(received_at=T0, answered_by=None))
        bulk_update_sparse(conn, order_teams, "id", {
            ots[0]: {"state": "received", "received_at": t1},
            ots[1]: {"state": "arrived", "arrived_at": t1, "state_at": t1},
            ots[2]: {"received_at": None},                 # set to NULL on purpose: not "left alone"
        })
    run(migrated_url, write)
    got = run(migrated_url, lambda c: {r.id: (r.state, r.state_at, r.received_at, r.arrived_at)
                                       for r in c.execute(select(order_teams))})
    assert got[ots[0]] == ("received", T0, t1, None)
    assert got[ots[1]] == ("arrived", t1, None, t1)
    assert got[ots[2]] == ("sent", T0, None, None)


def test_a_refused_batch_fails_as_sqlalchemy_reports_it(migrated_url):
    """Callers tell a duplicate from an outage by SQLAlchemy's exception classes (and a deadline
    by `.orig`): a batch write reports a constraint like any statement, and nothing of it stays."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    def write(conn):
        bulk_insert(conn, sms_segments, [dict(message_id=10**9, seq=1, pdu="00", tpdu_length=1, state="queued",
                                              updated_at=T0)])            # no such message
    with pytest.raises(IntegrityError) as e:
        run(migrated_url, write)
    assert e.value.orig is not None
    assert run(migrated_url, lambda c: c.execute(select(sms_segments)).all()) == []


def test_held_writes_wait_for_a_read_or_the_end_and_the_read_sees_them(migrated_url):
    """PostgreSQL: nothing is written on the server while writes are held; a read takes them
    along first and sees them; the block's end sends the rest."""
    def unit(conn):
        pg = conn.dialect.name == "postgresql"
        seen = []
        with together(conn):
            bulk_insert(conn, audit_log, [dict(at=T0, actor="sms:+861", action="a", subject="one", detail={"n": 1})])
            seen.append(written_on_server(conn, migrated_url) if pg else None)
            n = conn.execute(select(audit_log.c.subject)).scalars().all()     # the read sends them first
            seen.append(written_on_server(conn, migrated_url) if pg else None)
            bulk_insert(conn, audit_log, [dict(at=T0, actor="sms:+862", action="a", subject="two", detail={"n": 2})])
        return pg, seen, n
    pg, seen, first_read = run(migrated_url, unit)
    assert first_read == ["one"]
    if pg:
        assert seen == [False, True]
    got = run(migrated_url, lambda c: c.execute(select(audit_log.c.subject, audit_log.c.detail)
                                                .order_by(audit_log.c.id)).all())
    assert [tuple(r) for r in got] == [("one", {"n": 1}), ("two", {"n": 2})]


@pytest.mark.parametrize("sent_by", ["the block's end", "a read"])
def test_a_held_write_that_fails_raises_as_sqlalchemy_does_and_nothing_is_kept(migrated_url, sent_by):
    def unit(conn):
        (i,) = insert_returning_ids(conn, audit_log, [dict(at=T0, actor="x", action="a", subject="first")])
        with together(conn):
            bulk_insert(conn, audit_log, [dict(at=T0, actor="y", action="a", subject="kept?")])
            bulk_insert(conn, audit_log, [dict(id=i, at=T0, actor="z", action="a", subject="same id")])
            if sent_by == "a read":
                conn.execute(select(audit_log.c.id)).all()
    with pytest.raises(IntegrityError):
        run(migrated_url, unit)
    assert run(migrated_url, lambda c: c.execute(select(audit_log)).all()) == []


def test_ids_drawn_for_several_tables_at_once_are_theirs(pg_migrated_url):
    """PostgreSQL (SQLite takes ids from INSERT .. RETURNING): each table's own sequence."""
    migrated_url = pg_migrated_url

    def unit(conn):
        mids, sids = draw_ids(conn, [(sms_messages, 3), (sms_segments, 2)])
        (later,) = insert_returning_ids(conn, sms_messages, [dict(phone="+8613800000001", text="收到",
                                                                  purpose="confirmation", state="queued",
                                                                  created_at=T0, updated_at=T0)])
        last_seg = conn.execute(text("SELECT last_value FROM sms_segments_id_seq")).scalar()
        return mids, sids, later, last_seg
    mids, sids, later, last_seg = run(migrated_url, unit)
    assert len(mids) == len(set(mids)) == 3 and mids == sorted(mids) and later > max(mids)
    assert len(sids) == 2 and sids == sorted(sids) and last_seg == max(sids)
