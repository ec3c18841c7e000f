"""Order creation: targets, on-scene commander, durability before sending, codes, idempotency."""
import random
from datetime import timedelta

import pytest
import pytest_twisted
from sqlalchemy import func, insert, select
from twisted.internet import defer

from gateway.orders.codes import choose_code
from gateway.orders.order import OrderRequest, Target
from gateway.storage.schema import deliveries, escalation_steps, order_teams, orders, teams
from tests._orders_rig import SUPERVISOR, Rig, local, phone, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)


def townships(i):
    return {1: "白塔镇", 2: "白塔镇", 3: "横溪镇"}.get(i, "城关镇")


def req(target, kind="ordinary", rule="same_township", key=None):
    return OrderRequest("INC-7", kind, "河道漫堤", Target.parse(target), rule, created_by="cli:test", idempotency_key=key)


def counts_tx(conn, order_id):
    c = lambda t, col: conn.execute(select(func.count()).select_from(t).where(col == order_id)).scalar()  # noqa
    steps = conn.execute(select(func.count()).select_from(escalation_steps)
                         .join(order_teams, order_teams.c.id == escalation_steps.c.order_team_id)
                         .where(order_teams.c.order_id == order_id)).scalar()
    return c(order_teams, order_teams.c.order_id), c(deliveries, deliveries.c.order_id), steps


def test_target_parse():
    assert Target.parse("all") == Target("all")
    assert Target.parse("kind:public,expert") == Target("kind", ("public", "expert"))
    assert Target.parse("township:白塔镇") == Target("township", ("白塔镇",))
    assert Target.parse("teams:PUB-01，PUB-02") == Target("teams", ("PUB-01", "PUB-02"))
    for bad in ("", "kind:", "region:x", "all:x"):
        with pytest.raises(ValueError):
            Target.parse(bad)


def test_request_validates_kind_and_rule():
    with pytest.raises(ValueError):
        OrderRequest("I", "fire", "t", Target("all"), "same_township")
    with pytest.raises(ValueError):
        OrderRequest("I", "rescue", "t", Target("all"), "nearby")
    assert OrderRequest("I", "stability", "t", Target("all"), "leaving_city").onscene_commander() == "县公安局局长"
    assert OrderRequest("I", "ordinary", "t", Target("all"), "same_township").onscene_commander() == "专业队伍负责人"
    assert OrderRequest("I", "rescue", "t", Target("all"), "same_township",
                        onscene_name="李副县长").onscene_commander() == "分管副县长 李副县长"


@pytest_twisted.inlineCallbacks
def test_targets_select_the_right_teams(database):
    yield database.run(seed_directory_tx, 4, None, townships)
    yield database.run(lambda c: c.execute(teams.update().where(teams.c.code == "PUB-04").values(kind="professional")))
    rig = Rig(database, T0)
    try:
        for target, want in (("all", 4), ("kind:public", 3), ("kind:professional", 1), ("township:白塔镇", 2),
                             ("teams:PUB-03,PUB-04", 2)):
            created = yield rig.orders.send(req(target))
            assert len(created.team_ids) == want, target
        with pytest.raises(LookupError):
            yield rig.orders.send(req("teams:PUB-01,NOPE-9"))
        with pytest.raises(LookupError):
            yield rig.orders.send(req("township:无此镇"))
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_committed_whole_before_anything_is_sent(database):
    yield database.run(seed_directory_tx, 2)
    rig = Rig(database, T0)
    seen = []
    real_adopt = rig.outbox.adopt

    def adopt(records):
        # When the outbox is told, the order, its teams and all its escalation steps are committed.
        with database.engine.connect() as c:
            seen.extend(counts_tx(c, r["order_id"]) for r in records)
        return real_adopt(records)
    rig.outbox.adopt = adopt
    try:
        created = yield rig.send(teams_=("PUB-01", "PUB-02"), kind="stability", rule="leaving_city", voice=True)
        assert len(seen) == 4 and all(s == (2, 8, 24) for s in seen)   # 2 teams; 4 SMS + 4 calls; 12 steps each
        text_ = rig.outbox.to(phone(1, "commander"), "order")[0]
        assert "县公安局局长" in text_ and "15分钟内集结完毕" in text_ and "4集结完毕" in text_
        states = yield database.run(lambda c: c.execute(select(deliveries.c.channel, deliveries.c.state)).all())
        # in the outbox but no modem accepted it (this rig has none): still queued, never "sent"
        assert sorted(set(states)) == [("sms", "queued"), ("voice", "no_answer")]
        ev = rig.events.of("order.created")[0]
        assert ev["order_code"] == created.code and ev["onscene_commander"] == "县公安局局长" and ev["teams"] == 2
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_answered_order_call_marks_the_team_delivered(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    rig.caller.outcome = "answered"
    try:
        yield rig.send(teams_=("PUB-01",), voice=True)
        st = yield database.run(lambda c: c.execute(select(order_teams.c.state, order_teams.c.delivered_at)).one())
        assert st.state == "delivered" and st.delivered_at is not None
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_idempotency_key_sends_once(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    try:
        a = yield rig.orders.send(req("all", key="dispatch-42"))
        b = yield rig.orders.send(req("all", key="dispatch-42"))
        assert a.order_id == b.order_id and b.existing
        n = yield database.run(lambda c: c.execute(select(func.count()).select_from(orders)).scalar())
        assert n == 1 and len(rig.events.of("order.created")) == 1
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_an_order_to_a_team_without_an_active_commander_is_refused_whole(database):
    from gateway.orders.store import NoCommander
    yield database.run(seed_directory_tx, 1)
    yield database.run(lambda c: c.execute(insert(teams).values(code="EXP-01", name="专家组", kind="expert",
                                                                created_at=T0)))
    rig = Rig(database, T0)
    yield rig.start()
    try:
        with pytest.raises(NoCommander) as e:
            yield rig.send(teams_=("PUB-01", "EXP-01"))
        assert e.value.teams == ["EXP-01"] and "EXP-01" in str(e.value)
        n = yield database.run(lambda c: c.execute(select(func.count()).select_from(orders)).scalar())
        assert n == 0 and rig.outbox.sent == [] and rig.events.of("order.created") == []
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_codes_are_unique_among_open_orders(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    rig.orders.rng = random.Random(1)
    try:
        created = yield defer.gatherResults([rig.orders.send(req("all")) for _ in range(40)])
        codes = [c.code for c in created]
        assert len(set(codes)) == 40 and all(len(c) == 4 and c.isdigit() for c in codes)
    finally:
        rig.stop()


def test_choose_code_avoids_used_codes():
    class Conn:
        def execute(self, _q):
            class R:
                def scalars(self_inner):
                    return [f"{i:04d}" for i in range(10000) if i != 1234]
            return R()
    from gateway.orders.codes import NoCodeLeft
    with pytest.raises(NoCodeLeft):
        choose_code(Conn(), random.Random(0))


@pytest_twisted.inlineCallbacks
def test_sweep_never_calls_the_ivrs_own_voice_rows_again(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    try:
        created = yield rig.send(teams_=("PUB-01",), voice=True)
        n_calls = len(rig.caller.calls)
        # The IVR's order caller writes its own row per call, "queued" until its first attempt.
        yield database.run(lambda c: c.execute(insert(deliveries).values(
            order_id=created.order_id, team_id=created.team_ids[0], phone=phone(1, "commander"), channel="voice",
            state="queued", attempts=0, detail="", created_at=T0, updated_at=T0)))
        handed = yield rig.fanout.send()
        assert handed == 0 and len(rig.caller.calls) == n_calls == 2
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_failing_outbox_loses_no_order_sms(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    real = rig.outbox.stage_tx

    def broken(conn, now, phone_, text_, **kw):
        real(conn, now, phone_, text_, **kw)
        raise RuntimeError("outbox write failed")     # after the delivery's own update began
    rig.outbox.stage_tx = broken
    try:
        with pytest.raises(RuntimeError):
            yield rig.send(teams_=("PUB-01",))
        assert rig.outbox.sent == []
        states = yield database.run(lambda c: c.execute(select(deliveries.c.state)).scalars().all())
        assert states == ["queued", "queued"]           # rolled back with the message: nothing lost
        rig.outbox.stage_tx = real
        yield rig.fanout.send()                 # the sweep, once the outbox is back
        assert len(rig.outbox.purposes("order")) == 2
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_sms_delivery_report_marks_the_team_delivered(database):
    from sqlalchemy import update
    from gateway.storage.schema import sms_messages
    yield database.run(seed_directory_tx, 2)
    rig = Rig(database, T0)
    try:
        created = yield rig.send(teams_=("PUB-01", "PUB-02"))
        first = [m for m in rig.outbox.purposes("order") if m["phone"] == phone(1, "deputy")][0]

        # What the SMS layer keeps: the message against our delivery row, settled by a status report.
        def report(c):
            c.execute(insert(sms_messages).values(phone=first["phone"], text=first["text"], purpose="order",
                                                  order_id=created.order_id, delivery_id=first["delivery_id"],
                                                  state="delivered", created_at=T0, updated_at=T0 + timedelta(seconds=9)))
        yield database.run(report)
        yield rig.fanout.send()                   # the sweep
        rows = yield database.run(lambda c: c.execute(select(order_teams.c.state, order_teams.c.delivered_at)
                                                      .order_by(order_teams.c.team_id)).all())
        assert [r.state for r in rows] == ["delivered", "sent"]
        # an answer moves on from delivered as usual
        out, _ = yield rig.sms(phone(1, "commander"), "1", T0 + timedelta(minutes=1))
        assert out.accepted
        yield database.run(lambda c: c.execute(update(sms_messages).values(state="delivered")))
        yield rig.fanout.send()
        rows = yield database.run(lambda c: c.execute(select(order_teams.c.state).order_by(order_teams.c.team_id))
                                  .scalars().all())
        assert rows == ["received", "sent"]      # never back to delivered
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_the_sweep_survives_a_failing_database_unit(database):
    from twisted.internet import reactor, task

    from gateway.orders.service import OrderService
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    real_run = database.run
    calls = {"n": 0}

    def flaky(fn, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:      # the first sweep's claim fails
            return defer.fail(RuntimeError("database hiccup"))
        return real_run(fn, *a, **kw)
    cli = OrderService(database, rig.clock, None, None, rig.cfg)   # as the CLI does
    yield cli.send(req("all"))
    rig.fanout.db = type("DB", (), {"run": staticmethod(flaky)})()
    yield rig.fanout.start()
    try:
        yield rig.fanout.settle()
        assert rig.outbox.sent == []
        rig.clock.advance(rig.cfg.refresh_seconds)   # the next sweep
        for _ in range(20):
            if rig.outbox.sent:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        assert len(rig.outbox.purposes("order")) == 2
    finally:
        rig.stop()
