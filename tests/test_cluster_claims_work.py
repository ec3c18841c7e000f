"""Several gateways on one database (issue 13): deliveries, escalation steps and call attempts are
claimed by one node, a start resets only its own node's rows (and dead nodes'), and a dead node's
work is taken over by a live one.  Liveness comes from `nodes` rows written with register_tx /
heartbeat_tx on the test's Clock, as the node service writes them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest_twisted
from sqlalchemy import func, insert, select, update
from twisted.internet import defer, reactor, task

from gateway import metrics
from gateway.cluster.claims import Claimer
from gateway.cluster.nodes import heartbeat_tx, register_tx
from gateway.escalation import store as estore
from gateway.escalation.config import EscalationConfig
from gateway.orders import store as ostore
from gateway.orders.order import OrderRequest, Target
from gateway.storage.schema import call_attempts, deliveries, escalation_steps, order_teams, orders, sms_messages
from ivr import call_store as cs
from ivr.order_caller import OrderCaller, RetryPolicy, stage_call_tx
from sms.store import add_message_tx
from tests._orders_rig import Rig, seed_directory_tx
from tests.test_ivr_order_caller import NOW, LinkDown, SyncDb, res

TIMEOUT = 15.0
A, B, X = Claimer("node-a", TIMEOUT), Claimer("node-b", TIMEOUT), Claimer("node-x", TIMEOUT)


def taken(kind):
    return metrics.WORK_TAKEN_OVER.labels(kind=kind)._value.get()


def order_tx(conn, now, n_teams, voice=True):
    import random
    seed_directory_tx(conn, n_teams, now)
    req = OrderRequest("INC-13", "rescue", "白塔镇山体滑坡，速派人员",
                       Target("teams", tuple(f"PUB-{i:02d}" for i in range(1, n_teams + 1))), "same_township",
                       voice=voice, created_by="cli:test")
    return ostore.create_order_tx(conn, req, now, EscalationConfig(), random.Random(13)).order_id


def alive_tx(conn, names, now):
    for n in names:
        register_tx(conn, n, "host-" + n, 1, now, TIMEOUT)


@pytest_twisted.inlineCallbacks
def test_two_fan_outs_at_once_hand_each_delivery_once(database):
    """Both nodes' fan-out sweeps run at the same moment over the same order (on PostgreSQL in
    parallel): each SMS delivery gets one message, each voice delivery one call."""
    now = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
    yield database.run(order_tx, now, 20)
    yield database.run(alive_tx, ["node-a", "node-b"], now)
    cfg = EscalationConfig()

    def sweep(conn, claimer):
        return ostore.hand_deliveries_tx(conn, None, now, cfg, add_message_tx, stage_call_tx, limit=4, claimer=claimer)
    handed = {"node-a": 0, "node-b": 0}
    for _ in range(60):
        got = yield defer.gatherResults([database.run(sweep, c) for c in (A, B)])
        for c, h in zip((A, B), got):
            handed[c.node] += len(h.messages) + h.calls
        if not any(len(h.messages) + h.calls for h in got):
            break

    def counts(conn):
        per_sms = conn.execute(select(deliveries.c.id, func.count(sms_messages.c.id))
                               .join(sms_messages, sms_messages.c.delivery_id == deliveries.c.id, isouter=True)
                               .where(deliveries.c.channel == "sms").group_by(deliveries.c.id)).all()
        per_call = conn.execute(select(deliveries.c.id, func.count(call_attempts.c.id))
                                .join(call_attempts, call_attempts.c.delivery_id == deliveries.c.id, isouter=True)
                                .where(deliveries.c.channel == "voice").group_by(deliveries.c.id)).all()
        owners = conn.execute(select(deliveries.c.owner_node, func.count()).group_by(deliveries.c.owner_node)).all()
        return per_sms, per_call, dict(owners)
    per_sms, per_call, owners = yield database.run(counts)
    assert len(per_sms) == 40 and {n for _, n in per_sms} == {1}, "an SMS delivery staged twice or never"
    assert len(per_call) == 40 and {n for _, n in per_call} == {1}, "a voice delivery called twice or never"
    assert owners.get("node-a", 0) == handed["node-a"] and owners.get("node-b", 0) == handed["node-b"]
    assert sum(handed.values()) == 80


def _insert_left(conn, now, state_of, owners):
    """Rows an interrupted hand-off / claim left behind, one per owner."""
    oid = order_tx(conn, now, len(owners), voice=False)
    dids = conn.execute(select(deliveries.c.id).where(deliveries.c.order_id == oid, deliveries.c.channel == "sms")
                        .order_by(deliveries.c.id)).scalars().all()
    sids = conn.execute(select(escalation_steps.c.id).join(order_teams)
                        .where(order_teams.c.order_id == oid, escalation_steps.c.step == 1,
                               escalation_steps.c.stage == "receipt").order_by(escalation_steps.c.id)).scalars().all()
    for did, sid, owner in zip(dids, sids, owners):
        conn.execute(update(deliveries).where(deliveries.c.id == did).values(state="handing", owner_node=owner))
        conn.execute(update(escalation_steps).where(escalation_steps.c.id == sid)
                     .values(state="firing", fired_at=now, owner_node=owner))
    return dict(zip(owners, dids)), dict(zip(owners, sids))


@pytest_twisted.inlineCallbacks
def test_a_start_resets_only_its_own_and_dead_nodes_handing_deliveries_and_firing_steps(database):
    now = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
    yield database.run(alive_tx, ["node-a", "node-b"], now)     # node-x never wrote a heartbeat: dead
    dels, steps = yield database.run(_insert_left, now, None, ["node-a", "node-b", "node-x"])
    before = taken("delivery")
    n, dead = yield database.run(ostore.requeue_handing_tx, now + timedelta(seconds=5), B)
    assert (n, dead) == (2, 1)
    yield database.run(estore.load_pending_tx, now + timedelta(seconds=5), B)

    def states(conn):
        d = dict(conn.execute(select(deliveries.c.id, deliveries.c.state).where(deliveries.c.id.in_(dels.values()))).all())
        s = dict(conn.execute(select(escalation_steps.c.id, escalation_steps.c.state)
                              .where(escalation_steps.c.id.in_(steps.values()))).all())
        return d, s
    d, s = yield database.run(states)
    assert d[dels["node-a"]] == "handing" and s[steps["node-a"]] == "firing"          # a live node's: untouched
    assert d[dels["node-b"]] == d[dels["node-x"]] == "queued"
    assert s[steps["node-b"]] == s[steps["node-x"]] == "pending"
    assert before == taken("delivery")          # counted by the fan-out, not by the SQL

    # node A dies: its rows are taken at the next periodic takeover, by the live node only
    later = now + timedelta(seconds=TIMEOUT + 1)
    yield database.run(heartbeat_tx, "node-b", later)
    n, dead = yield database.run(ostore.requeue_handing_tx, later, B, True)
    assert (n, dead) == (1, 1)
    dead, teams = yield database.run(estore.release_firing_tx, later, B, True)
    assert dead == 1 and len(teams) == 1
    d, s = yield database.run(states)
    assert d[dels["node-a"]] == "queued" and s[steps["node-a"]] == "pending"


@pytest_twisted.inlineCallbacks
def test_a_step_left_firing_by_a_dead_node_fires_once_on_a_live_one(database):
    rig = Rig(database, datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc))
    rig.escalation.claimer, rig.escalation.takeover_seconds = B, 3.0
    rig.caller.claimer = B
    yield rig.db.run(seed_directory_tx, 3)
    yield rig.start()
    yield database.run(alive_tx, ["node-a", "node-b"], rig.now())
    created = yield rig.send(("PUB-01",))
    first = yield database.run(lambda c: c.execute(
        select(escalation_steps.c.id, escalation_steps.c.due_at, escalation_steps.c.action).join(order_teams)
        .where(order_teams.c.order_id == created.order_id).order_by(escalation_steps.c.due_at,
                                                                    escalation_steps.c.id)).first())
    due = first.due_at if first.due_at.tzinfo else first.due_at.replace(tzinfo=timezone.utc)
    # node A claimed the first step at its due time and has not committed what it sends yet
    yield rig.advance_to(due - timedelta(seconds=1))
    yield database.run(lambda c: [heartbeat_tx(c, n, rig.now()) for n in ("node-a", "node-b")])
    yield database.run(lambda c: c.execute(update(escalation_steps).where(escalation_steps.c.id == first.id)
                                           .values(state="firing", fired_at=due, owner_node="node-a")))
    sent_before = len(rig.outbox.sent) + len(rig.caller.calls)

    @defer.inlineCallbacks
    def run_for(seconds, beat):
        t = 0.0
        while t < seconds:
            yield rig.advance_to(rig.now() + timedelta(seconds=1))
            t += 1
            for n in beat:
                yield database.run(heartbeat_tx, n, rig.now())
    yield run_for(10, ["node-a", "node-b"])        # A alive: B leaves A's step alone
    state = yield database.run(lambda c: c.execute(select(escalation_steps.c.state, escalation_steps.c.owner_node)
                                                   .where(escalation_steps.c.id == first.id)).one())
    assert tuple(state) == ("firing", "node-a") and len(rig.outbox.sent) + len(rig.caller.calls) == sent_before
    before = taken("escalation_step")
    yield run_for(TIMEOUT + 5, ["node-b"])          # A died
    state = yield database.run(lambda c: c.execute(select(escalation_steps.c.state, escalation_steps.c.owner_node,
                                                          escalation_steps.c.late)
                                                   .where(escalation_steps.c.id == first.id)).one())
    assert tuple(state) == ("fired", "node-b", True)
    assert taken("escalation_step") == before + 1
    fired = (len(rig.outbox.sent) + len(rig.caller.calls)) - sent_before
    assert fired >= 1, "the step taken over sent nothing"
    yield run_for(5, ["node-b"])
    assert (len(rig.outbox.sent) + len(rig.caller.calls)) - sent_before == fired      # and only once
    rig.stop()


@pytest_twisted.inlineCallbacks
def test_two_order_callers_claim_each_due_attempt_once(database):
    now = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
    oid = yield database.run(order_tx, now, 2, False)
    yield database.run(alive_tx, ["node-a", "node-b"], now)
    team = yield database.run(lambda c: c.execute(select(order_teams.c.team_id)).scalars().first())
    yield database.run(lambda c: [stage_call_tx(c, now, order_id=oid, team_id=team, member_id=None,
                                                phone=f"+86138{i:08d}", purpose="supervisor") for i in range(60)])
    got = {"node-a": [], "node-b": []}
    for _ in range(40):
        batch = yield defer.gatherResults([database.run(cs.claim_due_tx, now, 3, (), c) for c in (A, B)])
        for c, (attempts, _cancelled) in zip((A, B), batch):
            got[c.node] += [a.id for a in attempts]
        if not any(a for a, _ in batch):
            break
    ids = got["node-a"] + got["node-b"]
    assert len(ids) == 60 and len(set(ids)) == 60, "an attempt placed by both nodes, or never"
    owners = yield database.run(lambda c: dict(c.execute(select(call_attempts.c.id, call_attempts.c.owner_node)).all()))
    assert all(owners[i] == n for n, l in got.items() for i in l)


def test_a_call_in_flight_on_a_dead_node_becomes_unknown_then_is_retried_by_a_live_one():
    db = SyncDb()
    db.run(alive_tx, ["node-a", "node-b"], NOW)
    db.run(stage_call_tx, NOW, order_id=1, team_id=3, member_id=None, phone="+8613805761234", purpose="order")
    [a], _ = db.run(cs.claim_due_tx, NOW, 10, (), A).result           # node A placed it
    clock = task.Clock()
    clock.advance(NOW.timestamp() + 1)
    link = LinkDown(res(4))
    caller = OrderCaller(clock, link, db, policy=RetryPolicy(attempts=3, delay=10), claimer=B, takeover_seconds=3.0)
    caller.start()
    link.up()                                    # B reconciles: A is alive, its call is not B's
    for _ in range(5):
        clock.advance(1)
        db.run(heartbeat_tx, "node-a", datetime.fromtimestamp(clock.seconds(), timezone.utc))
        db.run(heartbeat_tx, "node-b", datetime.fromtimestamp(clock.seconds(), timezone.utc))
    assert [(x["state"], x["owner_node"]) for x in db.attempts()] == [("placing", "node-a")] and link.calls == []
    before = taken("call_attempt")
    for _ in range(int(TIMEOUT) + 5):            # A died; Asterisk no longer has its channel
        clock.advance(1)
        db.run(heartbeat_tx, "node-b", datetime.fromtimestamp(clock.seconds(), timezone.utc))
    clock.advance(10)                            # the retry policy's delay
    got = db.attempts()
    assert [(x["state"], x["attempt"], x["owner_node"]) for x in got] == [("unknown", 1, "node-b"),
                                                                          ("answered", 2, "node-b")]
    assert taken("call_attempt") == before + 1 and len(link.calls) == 1
    caller.stop()


@pytest_twisted.inlineCallbacks
def test_one_node_delivers_to_a_webhook_and_another_takes_its_cursor_over_when_it_dies(database):
    from twisted.internet.task import Clock

    from adapters.events import EventTail
    from adapters.webhooks import WebhookSection, Webhooks
    from tests.test_adapters_events import T0, FakePost, record_tx, settle
    clock = Clock()
    clock.advance(T0.timestamp())
    now = lambda: datetime.fromtimestamp(clock.seconds(), timezone.utc)  # noqa: E731
    yield database.run(alive_tx, ["node-a", "node-b"], now())
    cfg = WebhookSection(urls=["https://dispatch.example/hook"], refresh_s=5.0)
    posts, hooks, tails = {}, {}, {}
    for c in (A, B):
        posts[c.node] = FakePost()
        tails[c.node] = EventTail(clock, database)
        yield tails[c.node].start()
        hooks[c.node] = Webhooks(clock, database, tails[c.node], cfg, post=posts[c.node], claimer=c)
        yield hooks[c.node].start()
    first = yield database.run(record_tx, 3)
    clock.advance(5)           # the refresh loops look again
    yield settle(lambda: len(posts["node-a"].calls) + len(posts["node-b"].calls) >= 3, "the first events")
    assert sorted(len(p.calls) for p in posts.values()) == [0, 3], "both nodes delivered the same events"
    owner = "node-a" if posts["node-a"].calls else "node-b"
    other = "node-b" if owner == "node-a" else "node-a"
    assert posts[owner].ids() == first
    yield hooks[owner].stop()          # the owner dies (its cursor was written); no more heartbeats
    tails[owner].stop()
    before = taken("webhook_cursor")
    more = yield database.run(record_tx, 2)
    for _ in range(int(TIMEOUT / 5) + 2):
        clock.advance(5)
        yield database.run(heartbeat_tx, other, now())
        yield task.deferLater(reactor, 0.05, lambda: None)      # the refresh's database work
    yield settle(lambda: len(posts[other].calls) >= 2, "the dead node's subscriber delivered by the survivor")
    assert posts[other].ids() == more                     # from the cursor: nothing lost, nothing again
    assert taken("webhook_cursor") == before + 1
    yield hooks[other].stop()
    tails[other].stop()


@pytest_twisted.inlineCallbacks
def test_the_oldest_work_due_and_not_done_is_reported_per_kind(database):
    from gateway.cluster.outbox import OutboxAges
    created = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
    oid = yield database.run(order_tx, created, 2)                 # deliveries queued, steps pending
    clock = task.Clock()
    ages = OutboxAges(clock, database)

    def gauge(kind):
        return metrics.OUTBOX_OLDEST.labels(kind=kind)._value.get()
    clock.advance((created + timedelta(seconds=90)).timestamp())
    yield ages.refresh()
    assert gauge("delivery") == 90.0                # not handed on for 90 s
    assert gauge("sms_segment") == gauge("call_attempt") == 0.0
    first_due = yield database.run(lambda c: c.execute(select(func.min(escalation_steps.c.due_at))).scalar())
    first_due = first_due if first_due.tzinfo else first_due.replace(tzinfo=timezone.utc)
    assert gauge("escalation_step") == 0.0          # the first rung is not due yet
    # 30 s after the first rung fell due, the deliveries handed on, a message waiting for a modem
    at = first_due + timedelta(seconds=30)
    yield database.run(lambda c: ostore.hand_deliveries_tx(c, oid, at - timedelta(seconds=20), EscalationConfig(),
                                                           add_message_tx, stage_call_tx, claimer=A))
    clock.advance(at.timestamp() - clock.seconds())
    yield ages.refresh()
    assert gauge("escalation_step") == 30.0
    assert gauge("sms_segment") == 20.0 and gauge("call_attempt") == 20.0     # staged 20 s ago, still waiting
    assert gauge("delivery") == 0.0
    # the SMS went out and the calls were answered: nothing left of those kinds
    yield database.run(lambda c: (c.execute(update(sms_messages).values(state="delivered")),
                                  c.execute(update(call_attempts).values(state="answered"))))
    yield ages.refresh()
    assert gauge("sms_segment") == gauge("call_attempt") == 0.0
