"""Several gateways on one database (issue 13): SMS work is claimed, never taken over by a start.

Two (or three) SMS banks with different node names share one database, each on its own emulated
modems (a machine of its own: its own SIM numbers, the same port names), in one process on a
Clock; the database runs for real.  Heartbeats are written into `nodes` as the node service does.
What the phones received is read from the emulated networks, never from the banks.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest_twisted
from sqlalchemy import select
from twisted.internet import defer, reactor, task

from gateway import metrics
from gateway.cluster.claims import Claimer
from gateway.cluster.config import ClusterSection
from gateway.cluster.nodes import heartbeat_tx, register_tx
from gateway.storage import schema as t
from sms.bank import SmsBank
from sms.config import SmsConfig
from sms.emulator import EmulatorBank
from sms.modem import READY
from sms.store import SqlStore, add_message_tx
from tests._sms_fixtures import ORDER, phone
from tests.test_sms_restart import KillableStore

CLUSTER = ClusterSection(node_timeout_s=15.0, heartbeat_s=3.0)
FINAL = ("sent", "delivered")


def cfg(**kw):
    base = dict(probe_interval=30.0, unknown_wait=5.0, affinity_wait=5.0, expected_segment_seconds=1.0,
                late_answer_grace=0.5)
    base.update(kw)
    return SmsConfig(**base)


def utc(clock) -> datetime:
    return datetime.fromtimestamp(clock.seconds(), tz=timezone.utc)


class Node:
    """A gateway machine: its modems (emulated, its own SIMs), its bank, its heartbeat."""

    def __init__(self, name, clock, database, modems, index, config=None):
        self.name, self.clock, self.database = name, clock, database
        self.emu = EmulatorBank(clock, modems, loopback=True, segment_time=1.0, report_delay=0.5,
                                sim_prefix=f"+8613{index}0000")
        self.emu.start()
        self.store = KillableStore(SqlStore(database))
        self.bank = SmsBank(clock, self.store, config or cfg(),
                            {m.name: self.emu.opener(i) for i, m in enumerate(self.emu.modems)},
                            node=name, cluster=CLUSTER)
        self.alive = True

    @defer.inlineCallbacks
    def start(self, register=True):
        if register:
            yield self.database.run(register_tx, self.name, "host-" + self.name, 1, utc(self.clock),
                                    CLUSTER.node_timeout_s)
        yield self.bank.start()

    def beat(self):
        if self.alive:
            return self.database.run(heartbeat_tx, self.name, utc(self.clock))
        return defer.succeed(None)

    @defer.inlineCallbacks
    def kill(self):
        """kill -9: nothing more reaches the database, the modems' ports close, no heartbeat."""
        self.alive = False
        settled = self.store.kill()
        self.bank.abandon()
        yield settled

    def idle(self):
        return self.store.inner.idle()

    def ready(self):
        return all(s.driver.state == READY and not s.driver.session.busy for s in self.bank.slots.values())


@defer.inlineCallbacks
def quiet(nodes):
    """Let what the banks handed to the database commit, their claims included (it runs on the
    real reactor): the Clock stands still meanwhile, as a fast database would let it."""
    for _ in range(1000):
        for _ in range(3):
            yield task.deferLater(reactor, 0, lambda: None)
            yield defer.DeferredList([n.idle() for n in nodes])
        if not any(n.alive and n.bank._claiming for n in nodes):
            return
        yield task.deferLater(reactor, 0.002, lambda: None)


@defer.inlineCallbacks
def drive(clock, nodes, seconds, until=None, step=0.1):
    """Advance the Clock in steps, heartbeats every CLUSTER.heartbeat_s, the database settling
    between steps.  Returns True as soon as `until()` (a Deferred[bool] or a bool) holds."""
    for _ in range(int(round(seconds / step))):
        yield quiet(nodes)
        if until is not None and (yield defer.maybeDeferred(until)):
            return True
        before = clock.seconds()
        clock.advance(step)
        if int(clock.seconds() / CLUSTER.heartbeat_s) != int(before / CLUSTER.heartbeat_s):
            yield defer.DeferredList([n.beat() for n in nodes])
    yield quiet(nodes)
    return bool(until is not None and (yield defer.maybeDeferred(until)))


def stage(database, clock, phones, text=ORDER):
    """Messages committed as the fan-out does (stage_tx in the caller's transaction): free for any node."""
    return database.run(lambda conn: [add_message_tx(conn, utc(clock), p, text, "order", None, None)
                                      for p in phones])


def rows(database):
    m, s = t.sms_messages, t.sms_segments
    return database.run(lambda c: [dict(r) for r in c.execute(
        select(s.c.message_id, s.c.seq, s.c.state, s.c.outcome_unknown, m.c.owner_node, m.c.phone, m.c.concat_ref,
               m.c.state.label("message_state"))
        .join(m, m.c.id == s.c.message_id).order_by(s.c.message_id, s.c.seq)).mappings()])


def all_final(database, n):
    return rows(database).addCallback(
        lambda rs: len({r["message_id"] for r in rs}) == n and all(r["message_state"] in FINAL for r in rs))


def received(nodes):
    """(phone, seq) → [(sender SIM, reference)] over every emulated network."""
    out: dict = {}
    for n in nodes:
        for ph, parts in n.emu.network.parts.items():
            for p in parts:
                out.setdefault((ph, p.seq), []).append((p.sender, p.ref))
    return out


@defer.inlineCallbacks
def ready(clock, nodes):
    assert (yield drive(clock, nodes, 20, until=lambda: all(n.ready() for n in nodes)))


def stop(*nodes):
    for n in nodes:
        n.bank.abandon()
        n.emu.stop()


@pytest_twisted.inlineCallbacks
def test_a_restart_of_one_node_never_touches_the_other_nodes_messages_in_flight(database):
    """The reported bug: B restarted while A had segments in its modems' hands; B turned them
    "unknown" and sent them again (80 phones got the order twice)."""
    from twisted.internet.task import Clock
    clock = Clock()
    clock.advance(1_000_000)
    a, b = Node("node-a", clock, database, 4, 1), Node("node-b", clock, database, 4, 2)
    b2 = None
    try:
        yield a.start()
        yield b.start()
        yield ready(clock, [a, b])
        recs = yield stage(database, clock, [phone(i) for i in range(24)])
        a.bank.adopt(recs)
        b.bank.poke()

        def a_in_flight():
            return rows(database).addCallback(lambda rs: sum(1 for r in rs if r["owner_node"] == "node-a"
                                                             and r["state"] == "submitting") >= 3)
        assert (yield drive(clock, [a, b], 10, until=a_in_flight))
        before = yield rows(database)
        a_flying = {(r["message_id"], r["seq"]) for r in before if r["owner_node"] == "node-a"
                    and r["state"] == "submitting"}
        a_messages = {r["message_id"] for r in before if r["owner_node"] == "node-a"}
        # B restarts (crash and start) while A's segments are in its modems' hands
        yield b.kill()
        b2 = Node("node-b", clock, database, 4, 3)
        yield b2.start(register=False)
        yield quiet([a, b2])
        after = yield rows(database)
        now = {(r["message_id"], r["seq"]): r for r in after}
        for key in a_flying:
            assert now[key]["state"] in ("submitting", "sent", "delivered") and now[key]["outcome_unknown"] == 0, \
                f"node B's start touched node A's segment {key}: {now[key]}"
        assert all(now[(mid, 1)]["owner_node"] == "node-a" for mid in a_messages)
        assert (yield drive(clock, [a, b2], 120, until=lambda: all_final(database, 24)))
        final = yield rows(database)
        got = received([a, b, b2])
        unknown = {r["message_id"] for r in final if r["outcome_unknown"]}
        assert not unknown & a_messages, "one of node A's messages was put in doubt by node B's restart"
        by_id = {r["message_id"]: r for r in final}
        for r in final:
            copies = len(got.get((r["phone"], r["seq"]), []))
            assert copies >= 1, f"{r['phone']} never got part {r['seq']}"
            if copies > 1:      # only a segment B itself had in flight when it died may go twice
                assert r["message_id"] in unknown and by_id[r["message_id"]]["owner_node"] == "node-b", \
                    f"{r['phone']} got part {r['seq']} {copies} times"
        assert all(r["owner_node"] == "node-a" for r in final if r["message_id"] in a_messages)
    finally:
        stop(a, b, *([b2] if b2 else []))


@pytest_twisted.inlineCallbacks
def test_a_dead_nodes_half_sent_message_is_finished_by_another_with_its_remaining_parts(database):
    from twisted.internet.task import Clock
    clock = Clock()
    clock.advance(2_000_000)
    a, b = Node("node-a", clock, database, 1, 1), Node("node-b", clock, database, 1, 2)
    taken_before = metrics.WORK_TAKEN_OVER.labels(kind="sms_segment")._value.get()
    try:
        yield a.start()
        yield ready(clock, [a])
        text = ORDER + ORDER[:60]                  # three UCS-2 parts
        [rec] = yield stage(database, clock, [phone(7)], text)
        assert len(rec["segments"]) == 3
        a.bank.adopt([rec])

        def first_sent_second_in_hand():
            return rows(database).addCallback(lambda rs: [r["state"] for r in rs][:2] == ["sent", "submitting"]
                                              or [r["state"] for r in rs][:2] == ["delivered", "submitting"])
        assert (yield drive(clock, [a], 10, until=first_sent_second_in_hand))
        yield b.start()
        yield ready(clock, [b])
        yield a.kill()                                # part 2 in the modem's hands, part 3 never sent
        # A's heartbeat is younger than the timeout: B leaves its message alone
        assert not (yield drive(clock, [a, b], CLUSTER.node_timeout_s - 4,
                                until=lambda: rows(database).addCallback(
                                    lambda rs: any(r["owner_node"] != "node-a" for r in rs))))
        assert not b.emu.network.parts
        # A is dead: B takes the message over and finishes it
        assert (yield drive(clock, [a, b], 60, until=lambda: all_final(database, 1)))
        final = yield rows(database)
        assert [r["owner_node"] for r in final] == ["node-b"] * 3
        assert final[1]["outcome_unknown"] == 1            # in A's hands at its death: the unknown-outcome policy
        assert final[0]["outcome_unknown"] == final[2]["outcome_unknown"] == 0
        got = received([a, b])
        a_sim, b_sim = a.emu.modems[0].sim_number, b.emu.modems[0].sim_number
        ref = final[0]["concat_ref"]
        assert got[(phone(7), 1)] == [(a_sim, ref)]          # part 1 never again
        assert (b_sim, ref) in got[(phone(7), 3)] and len(got[(phone(7), 3)]) == 1
        assert (b_sim, ref) in got[(phone(7), 2)]            # resent (policy "resend"): same reference
        assert metrics.WORK_TAKEN_OVER.labels(kind="sms_segment")._value.get() - taken_before == 2
    finally:
        stop(a, b)


@pytest_twisted.inlineCallbacks
def test_a_node_without_modems_claims_no_sms(database):
    from twisted.internet.task import Clock
    clock = Clock()
    clock.advance(3_000_000)
    c = Node("node-c", clock, database, 0, 1)
    a = Node("node-a", clock, database, 2, 2)
    try:
        yield c.start()
        recs = yield stage(database, clock, [phone(i) for i in range(6)])
        c.bank.adopt(recs)                           # C's fan-out staged them
        mid = yield c.bank.enqueue(phone(9), "值班员：请回电", purpose="supervisor")   # and C's own alert
        yield drive(clock, [c], 10)
        rs = yield rows(database)
        assert {r["owner_node"] for r in rs} == {None} and {r["state"] for r in rs} == {"queued"}
        assert c.bank.message_state(mid) is None
        yield a.start()
        assert (yield drive(clock, [a, c], 60, until=lambda: all_final(database, 7)))
        rs = yield rows(database)
        assert {r["owner_node"] for r in rs} == {"node-a"}
        assert not c.emu.network.parts and len(a.emu.network.parts) == 7
    finally:
        stop(a, c)


@defer.inlineCallbacks
def fan_out(database, layout, epoch):
    """80 phones, two parts each, staged by the first node; every node started at once.
    Returns (makespan on the Clock, messages sent per node, copies per part received)."""
    from twisted.internet.task import Clock
    clock = Clock()
    clock.advance(epoch)
    yield database.run(lambda c: (c.execute(t.sms_segments.delete()), c.execute(t.sms_messages.delete())))
    nodes = [Node(f"node-{i}", clock, database, k, i + 1) for i, k in enumerate(layout)]
    try:
        for n in nodes:
            yield n.start()
        yield ready(clock, nodes)
        recs = yield stage(database, clock, [phone(i) for i in range(80)])
        nodes[0].bank.adopt(recs)
        start = clock.seconds()
        yield drive(clock, nodes, CLUSTER.heartbeat_s, step=0.25)
        early = yield rows(database)
        mine = sum(1 for r in early if r["seq"] == 1 and r["owner_node"] == "node-0")
        assert mine <= 2 * layout[0], f"node-0 claimed {mine} messages for {layout[0]} modems"
        assert (yield drive(clock, nodes, 200, until=lambda: all_final(database, 80), step=0.25))
        span = clock.seconds() - start
        final = yield rows(database)
        return span, Counter(r["owner_node"] for r in final if r["seq"] == 1), \
            Counter(len(v) for v in received(nodes).values())
    finally:
        stop(*nodes)


@pytest_twisted.inlineCallbacks
def test_two_nodes_share_a_fan_out_by_what_their_modems_carry(database):
    """2 nodes x 4 modems send an 80-phone fan-out about as fast as 1 node x 8 modems: each
    claims what its modems can start, so neither grabs all 80 while the other sits idle."""
    one, _, copies1 = yield fan_out(database, [8], 4_000_000)
    two, owners, copies2 = yield fan_out(database, [4, 4], 4_100_000)
    print(f"\n80-phone fan-out: 1x8 modems {one:.2f} s, 2x4 modems {two:.2f} s (ratio {two / one:.3f}), "
          f"split {dict(owners)}")
    assert copies1 == copies2 == Counter({1: 160})          # every part reached its phone once
    assert 34 <= owners["node-0"] <= 46 and owners["node-0"] + owners["node-1"] == 80, owners
    assert two / one <= 1.05, f"2x4 modems took {two:.2f} s against {one:.2f} s on 1x8"


@pytest_twisted.inlineCallbacks
def test_concurrent_claims_never_hand_the_same_message_to_both_nodes(database):
    """Claims of two nodes at once, over and over, through the database's thread pool (on
    PostgreSQL they run in parallel: SKIP LOCKED passes over what the other is claiming)."""
    from twisted.internet.task import Clock
    clock = Clock()
    clock.advance(5_000_000)
    recs = yield stage(database, clock, [phone(i) for i in range(120)], "短信")
    stores = {n: SqlStore(database) for n in ("node-a", "node-b", "node-c")}
    for n in stores:            # all three alive: none may take another's
        yield database.run(register_tx, n, "host", 1, utc(clock), CLUSTER.node_timeout_s)
    got: dict[str, list[int]] = {n: [] for n in stores}
    for _ in range(200):
        batch = yield defer.gatherResults([s.claim(clock.seconds(), Claimer(n, 15.0), 3) for n, s in stores.items()])
        for n, claimed in zip(stores, batch):
            got[n] += [r["id"] for r in claimed]
        if not any(batch):
            break
    every = [i for ids in got.values() for i in ids]
    assert sorted(every) == sorted(r["id"] for r in recs), "a message claimed twice or never"
    owners = yield database.run(lambda c: dict(c.execute(select(t.sms_messages.c.id, t.sms_messages.c.owner_node))
                                               .all()))
    for n, ids in got.items():
        assert all(owners[i] == n for i in ids)


@pytest_twisted.inlineCallbacks
def test_a_node_whose_modems_all_failed_gives_its_untouched_messages_back(database):
    """A's only modem is unplugged: the alert it enqueued itself goes back to the pool after
    sms.affinity_wait and B sends it; A never does."""
    from twisted.internet.task import Clock
    clock = Clock()
    clock.advance(6_000_000)
    a, b = Node("node-a", clock, database, 1, 1), Node("node-b", clock, database, 1, 2)
    try:
        yield a.start()
        yield b.start()
        yield ready(clock, [a, b])
        a.emu.unplug(0)
        yield drive(clock, [a, b], 2)
        assert not any(s.driver.healthy for s in a.bank.slots.values())
        mid = yield a.bank.enqueue(phone(3), "值班员：3号队无人应答，请电话联系", purpose="supervisor")
        rs = yield rows(database)
        assert [r["owner_node"] for r in rs] == ["node-a"]
        yield drive(clock, [a, b], cfg().affinity_wait - 1.5)
        assert [r["owner_node"] for r in (yield rows(database))] == ["node-a"]     # waits for its modem first
        assert (yield drive(clock, [a, b], 10, until=lambda: all_final(database, 1)))
        assert [r["owner_node"] for r in (yield rows(database))] == ["node-b"]
        assert list(b.emu.network.parts) == [phone(3)] and not a.emu.network.parts
        assert a.bank.message_state(mid) is None
    finally:
        stop(a, b)
