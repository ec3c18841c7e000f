"""2,000 open orders to 40 teams each (80,000 team timers): memory, and timer lateness during a
burst of 1,000 replies per second.

    .venv/bin/python -m bench.escalation_timers [--orders 2000] [--teams 40] [--rate 1000] [--burst 10]

Database: PostgreSQL (production's), a fresh schema of its own on --url, migrated to head and
dropped afterwards; --sqlite: a real SQLite file in a temporary directory (the product's settings:
WAL, synchronous=FULL).  It is filled by a CHILD process with bulk inserts of the rows
create_order_tx writes, steps planned by the product's plan_steps (2,000 orders x 40 teams:
80,000 order-teams, 960,000 escalation steps), so that the measured process holds only what a
running gateway holds.  The SMS outbox, order caller
and event sink are in-memory stubs (their cost belongs to their own parts); a stub call ends
"no_answer" after 30 s, as a phone that rings out.

The measured process runs the real reactor.  The engine's clock is the reactor shifted in time
so that the burst starts 5 s after the engine; the orders were sent over the 3 hours before
(--spread), so every rung of the receipt ladder and of the arrival deadline falls due during
the burst (about 60 team steps a second; --spread 3600 gives about 180).  After start-up the
bench calls gc.freeze(), as a long-running server should (--no-gc-freeze to compare).  The reply burst: --rate SMS replies per second
("CODE 1" from a commander of a random order's team) for --burst seconds, each through
FeedbackEngine.sms_received (parse, one transaction, confirmation to the stub outbox).

Figures:
- timer lateness: when the TimerQueue callback ran minus the due time (the headline: the
  reactor's promptness with 80,000 timers and the burst on it);
- step commit lateness: when the step's claim was committed minus its due time, for the steps due
  during the burst (a RESULT, target < 500 ms: a step is not taken until it is committed, so this is
  when the escalation really happens; it queues behind the replies' transactions);
- RSS of the process with every timer loaded, and its peak (VmHWM) during the burst.
The gateway's log goes to a file in the temporary directory, as in service (one line per step).
"""
from __future__ import annotations

import argparse
import hashlib
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

from bench.database import add_arguments, advance_sequences, analyze, bench_database

BASE = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)     # 10:00 in Shanghai: day limits


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))] if s else float("nan")


def load_average() -> str:
    """The machine's load (1/5/15 min): every figure is printed with it (a shared machine)."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_logged(tmp, measure):
    """Run `measure(reactor)` (a coroutine) on the real reactor, the log to a file as in service."""
    from twisted.internet import defer, task
    from twisted.logger import globalLogBeginner

    from gateway.logs import make_observer
    # Log as the gateway does (its observer and level, to a file), not into Twisted's start-up
    # buffer: 64k buffered events would be garbage-collector work the gateway never has.
    with open(f"{tmp}/gateway.log", "w") as logf:
        globalLogBeginner.beginLoggingTo([make_observer("text", "info", logf)], redirectStandardIO=False)
        task.react(lambda reactor: defer.ensureDeferred(measure(reactor)))


def rss_mb(field="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# --- the child: fill the database ---------------------------------------------------------------

HISTORY_SMS = 45_000


def populate(url, n_orders, n_teams, seed, spread):
    from sqlalchemy import insert

    from gateway.escalation.config import EscalationConfig
    from gateway.escalation.deadlines import plan_steps
    from gateway.storage import Database
    from gateway.storage.schema import (deliveries, duty_roster, escalation_steps, inbound_raw, member_phones,
                                        members, order_teams, orders, teams)

    db = Database(None, url)
    rng = random.Random(seed)
    t0 = time.perf_counter()

    def seed_tx(conn):
        for i in range(1, n_teams + 1):
            tid = conn.execute(insert(teams).values(code=f"T-{i:02d}", name=f"队伍{i}", kind="public",
                                                    township="城关镇", created_at=BASE)).inserted_primary_key[0]
            for role, suffix in (("commander", 1), ("deputy", 2)):
                mid = conn.execute(insert(members).values(team_id=tid, name=f"{role}{i}", role=role)).inserted_primary_key[0]
                conn.execute(insert(member_phones).values(member_id=mid, e164=f"+86138{i:04d}{suffix:04d}", rank=0))
        conn.execute(insert(duty_roster).values(name="值班长", e164="+8613900000000", starts_at=BASE - timedelta(days=1),
                                                ends_at=BASE + timedelta(days=30)))
    db.run_sync(seed_tx)
    cfg = EscalationConfig()
    codes = [f"{c:04d}" for c in rng.sample(range(10000), n_orders)]
    # Sent over the --spread seconds before BASE (default 3 h: 2,000 orders in 3 hours is tens of
    # times the center's busiest hour), so that the burst meets every rung of the receipt ladder
    # and of the arrival deadline; steps due before BASE+5 s are stored as fired already (the
    # gateway was running), so there is no backlog of overdue steps at start.
    offsets = sorted(rng.uniform(-spread + 5, 5) for _ in range(n_orders))
    already = BASE + timedelta(seconds=5)

    # Bulk rows with explicit ids, the steps planned by the product's own plan_steps (what
    # create_order_tx writes, without its one-order-at-a-time cost: 2,000 of those take minutes).
    def orders_tx(conn, k0, k1):
        o_rows, ot_rows, st_rows, d_rows = [], [], [], []
        for k in range(k0, k1):
            sent = BASE + timedelta(seconds=offsets[k])
            o_rows.append(dict(id=k + 1, code=codes[k], incident_ref=f"B-{k}", kind="rescue", onscene_commander="分管副县长",
                               text="bench", rule="same_township", voice=False, state="open", created_at=sent,
                               created_by="bench"))
            plan = plan_steps("same_township", sent, cfg)
            for j in range(n_teams):
                ot = k * n_teams + j + 1
                ot_rows.append(dict(id=ot, order_id=k + 1, team_id=j + 1, state="sent", state_at=sent, sent_at=sent))
                st_rows += [dict(order_team_id=ot, stage=p.stage, step=p.step, action=p.action, due_at=p.due_at,
                                 state="pending" if p.due_at >= already else "fired",
                                 fired_at=None if p.due_at >= already else p.due_at, late=False) for p in plan]
                for m in (2 * j + 1, 2 * j + 2):
                    d_rows.append(dict(order_id=k + 1, team_id=j + 1, member_id=m, phone="x", channel="sms",
                                       state="sent", attempts=1, created_at=sent, updated_at=sent))
        conn.execute(insert(orders), o_rows)
        conn.execute(insert(order_teams), ot_rows)
        conn.execute(insert(escalation_steps), st_rows)
        conn.execute(insert(deliveries), d_rows)
    for k0 in range(0, n_orders, 100):
        db.run_sync(orders_tx, k0, min(n_orders, k0 + 100))

    # A month of SMS already received and judged (about 1,500 a day: a center's inbound log is
    # never empty), so that looking up a raw row or a duplicate goes by its index as in service.
    def history_tx(conn, k0, k1):
        rows = []
        for k in range(k0, k1):
            raw = f"history {k}".encode()
            rows.append(dict(id=k + 1, channel="sms", source="/dev/ttyUSB0", sender="+8613800000000", raw=raw,
                             raw_sha256=hashlib.sha256(raw).hexdigest(), text=f"history {k}",
                             received_at=BASE - timedelta(days=30) + timedelta(seconds=k * 57), state="parsed"))
        conn.execute(insert(inbound_raw), rows)
    for k0 in range(0, HISTORY_SMS, 5000):
        db.run_sync(history_tx, k0, min(HISTORY_SMS, k0 + 5000))
    db.run_sync(advance_sequences, (orders, order_teams, inbound_raw))
    analyze(db, (teams, members, member_phones, duty_roster, orders, order_teams, deliveries, escalation_steps,
                 inbound_raw))
    db.engine.dispose()
    print(f"populated {n_orders} orders x {n_teams} teams in {time.perf_counter() - t0:.1f} s", flush=True)
    return codes


# --- the measured process -----------------------------------------------------------------------

class ShiftedClock:
    """The reactor's time, shifted: IReactorTime for the engine."""

    def __init__(self, reactor, offset):
        self.reactor, self.offset = reactor, offset

    def seconds(self):
        return self.reactor.seconds() + self.offset

    def callLater(self, delay, f, *a, **kw):
        return self.reactor.callLater(delay, f, *a, **kw)

    def getDelayedCalls(self):
        return self.reactor.getDelayedCalls()


async def measure(reactor, url, args, logf_name):
    from sqlalchemy import insert, select
    from twisted.internet import defer, task
    from zope.interface import implementer

    from gateway.escalation.config import EscalationConfig
    from gateway.escalation.engine import EscalationEngine
    from gateway.feedback.engine import FeedbackEngine
    from gateway.interfaces import InboundSms, IOrderCaller, ISmsOutbox
    from gateway.storage import Database
    from gateway.storage.schema import inbound_raw, orders

    @implementer(ISmsOutbox, IOrderCaller)
    class Stub:
        n_sms = n_calls = n_events = 0

        def enqueue(self, phone, text, *, purpose, order_id=None, delivery_id=None):
            Stub.n_sms += 1
            return defer.succeed(Stub.n_sms)

        def stage_tx(self, conn, now, *sms, **call):
            # One stub for both seams: an SMS (phone, text) or a call (keywords), each riding in
            # the transaction of the answer or the step that causes it.
            if sms:
                return {"phone": sms[0]}
            Stub.n_calls += 1
            return 0

        def adopt(self, records):
            Stub.n_sms += len(records)

        def call_order(self, order_code, phone, *, order_id, team_id, member_id=None, purpose="order"):
            # A call's outcome comes when the phone has rung out (30 s), not at once.
            Stub.n_calls += 1
            return task.deferLater(reactor, 30.0, lambda: "no_answer")

        def place_due(self):
            pass

        def committed(self, events):
            Stub.n_events += len(events)

    stub = Stub()
    cfg = EscalationConfig()
    db = Database(reactor, url)
    db.start()
    db.add_event_listener(stub.committed)
    n_replies = int(args.rate * args.burst)
    codes = await db.run(lambda c: c.execute(select(orders.c.code)).scalars().all())
    rng = random.Random(args.seed)
    # The SMS layer commits the raw SMS before it hands it to us: do that part beforehand.
    replies = []
    for _ in range(n_replies):
        team = rng.randrange(1, args.teams + 1)
        replies.append((f"+86138{team:04d}{rng.choice((1, 2)):04d}", f"{rng.choice(codes)} 1"))

    def raw_tx(conn):
        rows = [dict(channel="sms", sender=p, text=t, received_at=BASE, state="new") for p, t in replies]
        conn.execute(insert(inbound_raw), rows)
        return conn.execute(select(inbound_raw.c.id).order_by(inbound_raw.c.id)).scalars().all()
    raw_ids = await db.run(raw_tx)
    rss_before = rss_mb()

    clock = ShiftedClock(reactor, BASE.timestamp() - reactor.seconds())
    engine = EscalationEngine(db, clock, stub, stub, cfg)
    commit_lateness = []
    real_fire = engine._fire

    @defer.inlineCallbacks
    def timed_fire(keys, t):
        claim = yield real_fire(keys, t)
        now = clock.seconds()
        commit_lateness.extend((f.due_at.timestamp(), now - f.due_at.timestamp()) for f in claim.fired)
        return claim
    engine._fire = timed_fire
    feedback = FeedbackEngine(db, stub, engine, cfg)
    import gc
    gc_pauses = []
    gc_t = {}

    def gc_cb(phase, info):
        if phase == "start":
            gc_t["t"] = time.perf_counter()
        elif info["generation"] == 2:
            gc_pauses.append(time.perf_counter() - gc_t["t"])
    gc.callbacks.append(gc_cb)
    t0 = time.perf_counter()
    await engine.start()
    load_s = time.perf_counter() - t0
    if not args.no_gc_freeze:
        # What the gateway does once started (gateway/heap.py).  Without it: --no-gc-freeze.
        from gateway.heap import settle_after_start
        settle_after_start()
    rss_loaded = rss_mb()
    print(f"engine started: {len(engine.timers)} team timers rebuilt from the database in {load_s:.1f} s; "
          f"RSS {rss_before:.0f} MB before, {rss_loaded:.0f} MB with the timers")
    assert len(engine.timers) == args.orders * args.teams, len(engine.timers)

    # Wait for the first due time (BASE+5 s, engine clock), then the burst.
    await task.deferLater(reactor, max(0.0, BASE.timestamp() + 5 - clock.seconds()), lambda: None)
    engine.fired_lateness.clear()
    done = {"n": 0, "accepted": 0, "t_last": 0.0}
    pending = []

    def one(i):
        phone_, text_ = replies[i]
        d = feedback.sms_received(InboundSms(raw_ids[i], phone_, text_, datetime.now(timezone.utc), "bench"))

        def ok(outcome):
            done["n"] += 1
            done["accepted"] += bool(outcome.accepted)
            done["t_last"] = time.perf_counter()
        d.addCallback(ok)
        pending.append(d)
    tick = 0.01
    sent = {"i": 0}

    def pump():
        # Offer what the rate owes by now (wall clock), so a late tick catches up instead of
        # silently lowering the offered rate.
        owed = min(n_replies, int(args.rate * (time.perf_counter() - t_burst)) + 1)
        while sent["i"] < owed:
            one(sent["i"])
            sent["i"] += 1
        if sent["i"] >= n_replies:
            loop.stop()
    t_burst = time.perf_counter()
    loop = task.LoopingCall(pump)
    loop.clock = reactor
    await loop.start(tick, now=True)
    burst_wall = time.perf_counter() - t_burst
    burst_window = (clock.seconds() - burst_wall, clock.seconds())   # engine time
    burst_lateness = list(engine.fired_lateness)
    hwm = rss_mb("VmHWM")
    rss_burst = rss_mb()
    # Let the database catch up (bounded).
    deadline = time.perf_counter() + args.drain
    while done["n"] < n_replies and time.perf_counter() < deadline:
        await task.deferLater(reactor, 0.2, lambda: None)
    drained, accepted = done["n"], done["accepted"]
    reply_rate = drained / max(1e-9, (done["t_last"] - t_burst)) if drained else 0.0
    engine.stop()                  # no more timers; let the claim in flight finish (bounded)
    stop_by = time.perf_counter() + 30
    while (engine._claiming or feedback._busy) and time.perf_counter() < stop_by:
        await task.deferLater(reactor, 0.1, lambda: None)
    db.stop()
    ms = lambda v: v * 1000.0  # noqa: E731
    print(f"burst: {n_replies} replies offered in {burst_wall:.1f} s ({n_replies / burst_wall:.0f}/s); "
          f"{drained} judged ({accepted} accepted) by {done['t_last'] - t_burst:.1f} s after the burst began: "
          f"{reply_rate:.0f}/s end to end ({args.label}, group commit)")
    print(f"team timers fired during the burst: {len(burst_lateness)}; lateness p50 "
          f"{ms(percentile(burst_lateness, 50)):.1f} ms, p99 {ms(percentile(burst_lateness, 99)):.1f} ms, "
          f"max {ms(max(burst_lateness, default=float('nan'))):.1f} ms")
    every = [late for _due, late in commit_lateness]
    print(f"escalation steps committed: {len(every)}; commit lateness p50 "
          f"{ms(percentile(every, 50)):.0f} ms, p99 {ms(percentile(every, 99)):.0f} ms (whole run, {args.label})")
    with open(logf_name) as lf:
        print(f"gateway log: {sum(1 for _ in lf)} lines")
    print(f"full garbage collections: {len(gc_pauses)}, longest {ms(max(gc_pauses, default=0)):.0f} ms")
    print(f"stub: {Stub.n_sms} SMS, {Stub.n_calls} calls, {Stub.n_events} events")
    print(f"RSS: {rss_loaded:.0f} MB with {args.orders * args.teams} timers loaded, {rss_burst:.0f} MB after the burst, "
          f"peak (VmHWM) {hwm:.0f} MB")
    during = [late for due, late in commit_lateness if burst_window[0] <= due <= burst_window[1]]
    print(f"  of which due during the burst: {len(during)}; commit lateness p50 {ms(percentile(during, 50)):.0f} ms, "
          f"p99 {ms(percentile(during, 99)):.0f} ms, max {ms(max(during, default=float('nan'))):.0f} ms")
    print(f"load average {load_average()}")
    p99 = ms(percentile(burst_lateness, 99))
    print(f"RESULT timer_lateness_p99 {p99:.1f} ms target < 200")
    print(f"RESULT rss_peak {hwm:.0f} MB target < 500")
    print(f"RESULT escalation_commit_lateness_p99 {ms(percentile(during, 99)):.0f} ms target < 500")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--teams", type=int, default=40)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--burst", type=float, default=10)
    ap.add_argument("--drain", type=float, default=40, help="seconds to wait for the database after the burst")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spread", type=float, default=3 * 3600, help="orders were sent over this many seconds")
    ap.add_argument("--no-gc-freeze", action="store_true", help="leave start-up objects to the garbage collector")
    ap.add_argument("--populate", help=argparse.SUPPRESS)
    add_arguments(ap)
    args = ap.parse_args(argv)
    if args.populate:
        populate(args.populate, args.orders, args.teams, args.seed, args.spread)
        return 0
    with tempfile.TemporaryDirectory(prefix="yihu-bench-") as tmp, bench_database(args, tmp) as (url, label):
        args.label = label
        print(f"database: {label}; load average {load_average()}", flush=True)
        subprocess.run([sys.executable, "-m", "bench.escalation_timers", "--populate", url, "--orders", str(args.orders),
                        "--teams", str(args.teams), "--seed", str(args.seed), "--spread", str(args.spread)],
                       check=True, timeout=900)
        run_logged(tmp, lambda reactor: measure(reactor, url, args, f"{tmp}/gateway.log"))


if __name__ == "__main__":
    sys.exit(main())
