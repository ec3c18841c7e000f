"""Commanders' SMS replies judged end to end, on PostgreSQL (the production database).

    .venv/bin/python -m bench.replies [--orders 200] [--rate 1250] [--seconds 15] [--slow-rate 100]
                                      [--url postgresql+psycopg://...] [--sqlite]

What one reply costs in production, from the modem's PDU to the confirmation SMS queued:
the SMS-DELIVER PDU (made by the modem emulator's network code, as a modem would read it) goes
into the bank's inbound processor (``InboundProcessor.handle``: decoded, the raw SMS committed with
its duplicate check), which hands it to the real ``FeedbackEngine`` (grammar, one transaction that
judges and records it with its confirmation SMS staged in the same transaction through
``SmsBank.stage_tx`` (the transactional outbox, real ``sms.store.SqlStore``) and adopted by the bank
after the commit, the escalation engine told).  The escalation engine runs with every
team timer of the open orders loaded, as in service.  A reply's time is from ``handle()`` to the
feedback engine's answer (which fires after the confirmation is committed to the outbox).

Two phases in one run, on a fresh schema migrated to head and filled by a child process
(--orders open orders to 40 teams, each team with a commander and a deputy):
1. latency: --slow-rate replies per second for 10 s; reply -> confirmation queued p50/p99 (first,
   so that no backlog of the burst is in it);
2. throughput: --rate replies per second offered for --seconds (``CODE 1``/``2``/``3``, ``到达``,
   from random commanders and deputies of random open orders' teams); judged per second
   sustained = replies judged / time from the first offer to the last answer (a backlog not
   judged within --drain seconds is left out of the count, so lowers the figure).  Offered at
   1,250/s by default, above the 1,000/s target: offered at the target itself the figure could
   not reach it whatever the gateway's capacity (the last reply's own latency is in the time),
   so it measured the offer, not the capacity.

The database is one in service: the filled tables analyzed (the planner's statistics, as
autovacuum keeps them) and a month of inbound SMS already judged (45,000 rows), so that a raw-row
or duplicate look-up goes by its index; a freshly created empty table would be scanned whole.

Left out: the modem's serial line and AT commands (bench.sms_fanout measures the bank's modem
side), sending the confirmation over the air, the escalation's order calls (a stub stages none;
bench.agi_sessions measures calls), and webhooks/SSE delivery of the feedback
event (bench.events).  The load average is printed with the figures: on a shared machine they
must be re-measured on an idle one.
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque

from bench.database import add_arguments, bench_database
from bench.escalation_timers import BASE, ShiftedClock, load_average, percentile, run_logged


async def measure(reactor, url, args):
    from sqlalchemy import select
    from twisted.internet import task
    from zope.interface import implementer

    from gateway.escalation.config import EscalationConfig
    from gateway.escalation.engine import EscalationEngine
    from gateway.feedback.engine import FeedbackEngine
    from gateway.interfaces import IOrderCaller
    from gateway.storage import Database
    from gateway.storage.schema import orders
    from sms.bank import SmsBank
    from sms.emulator.network import deliver_pdus
    from sms.config import SmsConfig
    from sms.store import SqlStore

    @implementer(IOrderCaller)
    class Quiet:
        """Calls: their own bench measures them (bench.agi_sessions)."""

        def call_order(self, *a, **kw):
            # A call's outcome comes when the phone has rung out (30 s), not at once.
            return task.deferLater(reactor, 30.0, lambda: "no_answer")

        def stage_tx(self, conn, now, **call):
            return None         # an escalation call: not placed here (no call_attempts row)

        def place_due(self):
            pass

    quiet = Quiet()
    cfg = EscalationConfig()
    db = Database(reactor, url, threads=args.threads)
    db.start()
    bank = SmsBank(reactor, SqlStore(db), SmsConfig(), {})      # the outbox; no modem sends here
    # The orders were sent just before BASE: the engine's clock is the reactor's shifted there.
    escalation = EscalationEngine(db, ShiftedClock(reactor, BASE.timestamp() - reactor.seconds()), bank, quiet, cfg)
    feedback = FeedbackEngine(db, bank, escalation, cfg)
    events = []
    db.add_event_listener(lambda committed: events.append(len(committed)))
    bank.inbound.sink = feedback
    codes = await db.run(lambda c: c.execute(select(orders.c.code)).scalars().all())
    await escalation.start()
    from gateway.heap import settle_after_start
    settle_after_start()            # what the gateway does once its parts have started (gateway/cli.py)
    print(f"escalation engine: {len(escalation.timers)} team timers loaded")

    rng = random.Random(args.seed)
    words = ["{c} 1", "{c} 2", "{c} 到达", "{c}收到", "{c} 3", "到达现场 {c}"]

    def reply_pdus(n):
        out = []
        for i in range(n):
            team = rng.randrange(1, 41)
            phone = f"+86138{team:04d}{rng.choice((1, 2)):04d}"
            text = rng.choice(words).format(c=rng.choice(codes))
            ((pdu, length),) = deliver_pdus(phone, text, BASE.timestamp() + i, ref=i % 256)
            out.append((phone, text, pdu, length))
        return out

    started: dict[tuple, deque] = defaultdict(deque)
    latencies: list[float] = []
    done = {"n": 0, "accepted": 0, "t_last": 0.0}
    real_received = feedback.sms_received

    def timed_received(sms):
        t0 = started[(sms.sender, sms.text)].popleft()

        def answered(outcome):
            now = time.perf_counter()
            latencies.append(now - t0)
            done["n"] += 1
            done["accepted"] += bool(outcome.accepted)
            done["t_last"] = now
            return outcome
        return real_received(sms).addCallback(answered)
    bank.inbound.sink = type("Sink", (), {"sms_received": staticmethod(timed_received)})()

    async def offer(batch, rate):
        sent = {"i": 0}
        t_start = time.perf_counter()

        def pump():
            owed = min(len(batch), int(rate * (time.perf_counter() - t_start)) + 1)
            while sent["i"] < owed:
                phone, text, pdu, length = batch[sent["i"]]
                started[(phone, text)].append(time.perf_counter())
                bank.inbound.handle("bench-modem", pdu, length, dedup=True)
                sent["i"] += 1
            if sent["i"] >= len(batch):
                loop.stop()
        loop = task.LoopingCall(pump)
        loop.clock = reactor
        await loop.start(0.01, now=True)
        return t_start

    async def drain(n, limit):
        deadline = time.perf_counter() + limit
        while done["n"] < n and time.perf_counter() < deadline:
            await task.deferLater(reactor, 0.1, lambda: None)

    # 1. latency at a steady rate, first: on a database with no backlog
    slow = reply_pdus(int(args.slow_rate * 10))
    await offer(slow, args.slow_rate)
    await drain(len(slow), 30)
    p50, p99 = percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3
    print(f"latency at {args.slow_rate:.0f}/s: {done['n']} of {len(slow)} replies judged, reply -> confirmation "
          f"queued p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies, default=float('nan')) * 1e3:.1f} ms; "
          f"load average {load_average()}", flush=True)
    # 2. throughput
    latencies.clear()
    done.update(n=0, accepted=0)
    fast = reply_pdus(int(args.rate * args.seconds))
    cpu0 = time.process_time()
    t0 = await offer(fast, args.rate)
    offered_wall = time.perf_counter() - t0
    await drain(len(fast), args.drain)
    judged = done["n"]
    cpu = time.process_time() - cpu0      # every thread of this process: reactor and database threads
    sustained = judged / max(1e-9, done["t_last"] - t0)
    print(f"throughput: {len(fast)} replies offered in {offered_wall:.1f} s ({len(fast) / offered_wall:.0f}/s); "
          f"{judged} judged ({done['accepted']} recorded) by {done['t_last'] - t0:.1f} s: {sustained:.0f}/s sustained; "
          f"reply -> confirmation queued p50 {percentile(latencies, 50) * 1e3:.0f} ms, "
          f"p99 {percentile(latencies, 99) * 1e3:.0f} ms (queueing included); gateway CPU "
          f"{cpu * 1e3 / max(1, judged):.2f} ms per reply judged (all threads; the GIL lets about one core of it run)")
    print(f"outbox: {len(bank.messages)} confirmation/help SMS queued; {sum(events)} events committed")
    escalation.stop()
    db.stop()
    print(f"load average {load_average()}")
    print(f"RESULT replies_judged_per_s {sustained:.0f} replies/s target >= 1000")
    print(f"RESULT reply_confirmation_p99_at_100 {p99:.1f} ms target < 100")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--rate", type=float, default=1250, help="replies offered per second (above the target: "
                    "the figure is the gateway's capacity, not the offer)")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--slow-rate", type=float, default=100)
    ap.add_argument("--drain", type=float, default=60)
    ap.add_argument("--threads", type=int, default=4, help="database threads (the gateway's default on PostgreSQL)")
    ap.add_argument("--seed", type=int, default=1)
    add_arguments(ap)
    args = ap.parse_args(argv)
    if args.sqlite:
        args.threads = 1
    with tempfile.TemporaryDirectory(prefix="yihu-bench-") as tmp, bench_database(args, tmp) as (url, label):
        print(f"database: {label}, {args.threads} thread(s); {args.orders} open orders x 40 teams; "
              f"load average {load_average()}", flush=True)
        subprocess.run([sys.executable, "-m", "bench.escalation_timers", "--populate", url,
                        "--orders", str(args.orders), "--teams", "40", "--seed", str(args.seed),
                        "--spread", "600"], check=True, timeout=600)
        run_logged(tmp, lambda reactor: measure(reactor, url, args))


if __name__ == "__main__":
    sys.exit(main())
