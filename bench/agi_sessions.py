"""500 concurrent order calls against the gateway's FastAGI server, the real order flow on PostgreSQL.

    .venv/bin/python -m bench.agi_sessions [--sessions 500] [--ramp 2] [--rounds 2] [--seed 1]
                                           [--url postgresql+psycopg://...] [--sqlite]

The server runs in this process, wired as the gateway wires it (gateway/wiring.py): the product's
FastAgiFactory with its four flows, the peer gate, the one-time call-token gate
(``CallTokenGate``: each token's first use committed to call_tokens_used), the ``OrderBook``,
the real ``KeypadJournal`` and ``FeedbackEngine`` (the keypress committed raw, judged and recorded,
and the confirmation SMS staged in the real SMS outbox, ``SmsBank`` on ``SqlStore``, all in one
transaction, committed before the caller hears "recorded"; the engine writes the journal's row
first, and commits it alone first if that transaction fails).  Behind them: PostgreSQL, a fresh
schema migrated to head and filled by a child process with a roster (40 teams, a commander and a
deputy each) and 500 open orders sent to every team (20,000 order teams, their deliveries and
escalation steps); --sqlite for a SQLite file.
Every call is a different (order, team) pair with its own delivery and a valid token, minted as
``OrderCaller._variables()`` mints it (``CallTokens.variables``).

Asterisk's side is the project's emulator, run as a CHILD PROCESS (`--client PORT`), so that the
server's CPU and garbage collection are measured alone.  On a 2-core host the two share the CPU
(and PostgreSQL a third share).

Each session is a whole order call (ANSWER, GET VARIABLE x4, the order read out, GET DATA, key 1,
the confirmation, HANGUP).

Headline (paced): in each round the calls arrive within --ramp seconds and all stay up together
(peak concurrency is reported); prompts "play" for 0.3-1.5 s (compressed: real prompts are longer,
so real load is lighter).
- keypress -> confirmation played (a RESULT, p99 < 50 ms): from the emulator sending the key
  (GET DATA's reply) to it receiving the command that plays "recorded": the keypress journalled,
  the answer judged and committed, the confirmation SMS committed to the outbox, all in between;
- time per command = the gateway's turnaround as Asterisk sees it, for every command (token check
  and order look-up included); prompt time is not in it.  All rounds are pooled.  Also split by
  what the gateway waits for before sending the command: nothing in the database (a RESULT,
  p99 < 10 ms: issue 6's per-command measure, made with no database, like for like), the token's
  first use committed and the order read, or the keypress committed; beside each, the server's
  own time from the reply parsed to the command written (the rest is the sockets, the reactor's
  queue and the emulator's own scheduling on the shared cores).
CPU per session = the server process's CPU over the paced rounds / sessions.

For scale, in the same run: a BASELINE round after each paced round (the same calls and pacing
against a bare line protocol in this process that sends the same 14 commands with no parsing, no
session, no flow and no database: the floor that the host and the reactor set), and the host's
load average.

Also shown, not a target: a lockstep burst (all sessions connect at once, instant replies), where
a command waits behind the other sessions' work on the one reactor and on the database.

Left out: the escalation engine (the feedback engine is given none: the team's timers are
bench.escalation_timers's), sending the confirmation over the air (bench.sms_fanout), Asterisk
itself and its audio.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

from bench.database import add_arguments, bench_database
from bench.escalation_timers import load_average

MEDIA = ("STREAM FILE", "SAY DIGITS", "GET DATA", "WAIT FOR DIGIT")


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))] if s else float("nan")


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# The commands of a press-1 order call, as the product's flow sends them (the baseline replays them).
ORDER_CALL_COMMANDS = [
    "ANSWER", "GET VARIABLE ORDER_CODE", "GET VARIABLE YIHU_PHONE", "GET VARIABLE YIHU_DELIVERY",
    "GET VARIABLE YIHU_TOKEN",
    'STREAM FILE yihu/order-intro "01234"', 'SAY DIGITS 0427 "01234"', "GET DATA yihu/order-menu 5000 1",
    'STREAM FILE yihu/recorded ""', 'STREAM FILE yihu/status-received ""', 'STREAM FILE yihu/for-order ""',
    'SAY DIGITS 0427 ""', 'STREAM FILE yihu/goodbye ""', "HANGUP"]


def baseline_factory():
    """The floor: a bare line protocol that sends the same 14 commands, one per reply, with no
    parsing, no session, no flow.  Its turnaround is what the host and the reactor cost."""
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import LineReceiver

    class Bare(LineReceiver):
        delimiter = b"\n"

        def connectionMade(self):
            self.i = -1

        def lineReceived(self, line):
            if self.i < 0:
                if line.strip():
                    return
            elif not line[:1].isdigit():
                return                      # the HANGUP line
            self.i += 1
            if self.i < len(ORDER_CALL_COMMANDS):
                self.sendLine(ORDER_CALL_COMMANDS[self.i].encode())
            else:
                self.transport.loseConnection()
    return Factory.forProtocol(Bare)


# --- the emulated Asterisk (child process) ---------------------------------------------------------

WAITS = {"none": "commands that wait on no database (issue 6's measure, like for like)",
         "token": "the command after the token (its first use committed, the order read)",
         "key": "the command after the key (keypress, verdict and confirmation committed)"}


def waits_on(previous: str) -> str:
    """What the gateway waits for before the command that follows `previous` in an order call:
    the token's first use committed and the order read (after GET VARIABLE YIHU_TOKEN), the
    keypress committed with its verdict and confirmation (after GET DATA), or no database."""
    from ivr.tokens import TOKEN_VARIABLE
    if previous == f"GET VARIABLE {TOKEN_VARIABLE}":
        return "token"
    return "key" if previous.startswith("GET DATA") else "none"


async def run_round(reactor, port, calls, *, ramp, pace, turnarounds, keypresses=None, by_wait=None):
    """One round: each of `calls` ({code, phone, delivery, token}) placed once.  keypresses:
    where to put each call's keypress -> confirmation time (the turnaround of the command after
    GET DATA, when that command plays "recorded"); by_wait: each turnaround under what the
    gateway waited for before sending it (waits_on)."""
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.task import deferLater
    from ivr.emulator import Press, ScriptedCaller, place_call
    from ivr.prompts import sound
    from ivr.tokens import TOKEN_VARIABLE
    recorded = f"STREAM FILE {sound('recorded')} "
    n = len(calls)
    outcomes = {"confirmed": 0, "other": 0}

    async def one(i, call):
        if ramp:
            await deferLater(reactor, ramp * i / n, lambda: None)
        mine: list[float] = []

        def turnaround(seconds):
            mine.append(seconds)
            turnarounds.append(seconds)
        record = await place_call(
            reactor, "127.0.0.1", port, f"order?order={call['code']}", caller=ScriptedCaller([Press("1")]),
            variables={"ORDER_CODE": call["code"], "YIHU_PHONE": call["phone"],
                       "YIHU_DELIVERY": str(call["delivery"]), TOKEN_VARIABLE: call["token"]},
            idle_timeout=60, pace=pace, on_turnaround=turnaround)
        menu = next((k for k, c in enumerate(record.commands) if c.startswith("GET DATA")), None)
        if menu is not None and menu + 1 < len(record.commands) and len(mine) == len(record.commands) \
                and record.commands[menu + 1].startswith(recorded):
            outcomes["confirmed"] += 1
            if keypresses is not None:
                keypresses.append(mine[menu + 1])
        else:
            outcomes["other"] += 1
        if by_wait is not None:
            for previous, seconds in zip([""] + record.commands, mine):
                by_wait.setdefault(waits_on(previous), []).append(seconds)
        return record
    t0, c0 = time.perf_counter(), cpu_seconds()
    records = await gatherResults([Deferred.fromCoroutine(one(i, c)) for i, c in enumerate(calls)],
                                  consumeErrors=True)
    bad = [r for r in records if r.closed_by != "gateway" or not r.commands or r.commands[-1] != "HANGUP"]
    return {"wall": time.perf_counter() - t0, "cpu": cpu_seconds() - c0, "bad": len(bad),
            "commands": sum(len(r.commands) for r in records), **outcomes}


def phase(name):
    """Tell the server process which phase starts, so it can attribute its CPU time."""
    sys.stderr.write(f"PHASE {name}\n")
    sys.stderr.flush()


async def client_async(reactor, args):
    rng = random.Random(args.seed)

    def pace(line):
        return rng.uniform(0.3, 1.5) if line.startswith(MEDIA) else 0.0
    with open(args.calls) as f:
        calls = json.load(f)
    n = args.sessions

    def take(k):
        nonlocal calls
        mine, calls = calls[:k], calls[k:]
        return mine
    out = {"paced": [], "paced_turnarounds": [], "burst_turnarounds": [], "baseline_turnarounds": [],
           "paced_keypresses": [], "burst_keypresses": [], "paced_by_wait": {}}
    phase("warmup")
    await run_round(reactor, args.client, take(min(50, n)), ramp=0, pace=None, turnarounds=[])  # warm-up
    for _ in range(args.rounds):
        phase("paced")
        round_calls = take(n)
        out["paced"].append(await run_round(reactor, args.client, round_calls, ramp=args.ramp, pace=pace,
                                            turnarounds=out["paced_turnarounds"],
                                            keypresses=out["paced_keypresses"], by_wait=out["paced_by_wait"]))
        # the floor, at the same moment: same calls, same pacing, against the bare protocol
        phase("baseline")
        out.setdefault("baseline", []).append(await run_round(
            reactor, args.baseline_port, round_calls, ramp=args.ramp, pace=pace,
            turnarounds=out["baseline_turnarounds"]))
    phase("burst")
    out["burst"] = await run_round(reactor, args.client, take(n), ramp=0, pace=None,
                                   turnarounds=out["burst_turnarounds"], keypresses=out["burst_keypresses"])
    phase("end")
    print(json.dumps(out))
    return 0


# --- the gateway's FastAGI server (this process) -------------------------------------------------------

class _Child:
    """Runs the emulator child; collects its stdout and the server's CPU time per phase."""

    def __init__(self):
        from twisted.internet.defer import Deferred
        from twisted.internet.protocol import ProcessProtocol
        outer = self
        self.out, self.err, self.cpu = b"", b"", {}
        self._phase, self._t = None, cpu_seconds()
        self.done = Deferred()

        class P(ProcessProtocol):
            def outReceived(self, data):
                outer.out += data

            def errReceived(self, data):
                outer.err += data
                while b"\n" in outer.err:
                    line, outer.err = outer.err.split(b"\n", 1)
                    if line.startswith(b"PHASE "):
                        outer.mark(line[6:].decode())
                    else:
                        sys.stderr.write(line.decode(errors="replace") + "\n")

            def processEnded(self, reason):
                outer.mark(None)
                outer.done.callback(getattr(reason.value, "exitCode", 1))
        self.protocol = P()

    def mark(self, name):
        now = cpu_seconds()
        if self._phase is not None:
            self.cpu[self._phase] = self.cpu.get(self._phase, 0.0) + now - self._t
        self._phase, self._t = name, now


def order_calls_tx(conn, n: int, seed: int) -> list[dict]:
    """n different (order, team) pairs, each with its delivery to the team's commander."""
    from sqlalchemy import select
    from gateway.storage.schema import deliveries, member_phones, members, orders
    rows = conn.execute(select(deliveries.c.id, orders.c.code, member_phones.c.e164)
                        .join(orders, orders.c.id == deliveries.c.order_id)
                        .join(members, members.c.id == deliveries.c.member_id)
                        .join(member_phones, member_phones.c.member_id == members.c.id)
                        .where(members.c.role == "commander").order_by(deliveries.c.id)).all()
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} order teams to call; {n} calls wanted")
    return [{"delivery": r.id, "code": r.code, "phone": r.e164} for r in random.Random(seed).sample(rows, n)]


def outcome_counts_tx(conn) -> dict:
    from sqlalchemy import func, select
    from gateway.storage.schema import call_tokens_used, feedback, inbound_raw, sms_messages
    count = lambda t, *w: conn.execute(select(func.count()).select_from(t).where(*w)).scalar()  # noqa: E731
    return {"keypresses": count(inbound_raw, inbound_raw.c.channel == "keypad"), "feedback": count(feedback),
            "confirmations": count(sms_messages, sms_messages.c.purpose == "confirmation"),
            "tokens": count(call_tokens_used)}


async def server_async(reactor, args, url, tmp):
    import secrets
    from gateway.escalation.config import EscalationConfig
    from gateway.feedback.engine import FeedbackEngine
    from gateway.storage import Database
    from ivr.journal import KeypadJournal
    from ivr.orders import OrderBook
    from ivr.peers import PeerGate
    from ivr.refusals import RefusalAudit
    from ivr.service import make_fastagi_factory
    from ivr.token_gate import CallTokenGate
    from ivr.tokens import TOKEN_VARIABLE, CallTokens
    from sms.bank import SmsBank
    from sms.config import SmsConfig
    from sms.store import SqlStore

    db = Database(reactor, url, threads=args.threads)
    db.start()
    n = args.sessions
    calls = await db.run(order_calls_tx, min(50, n) + n * (args.rounds + 1), args.seed)
    # The tokens as OrderCaller._variables() mints them (valid while the bench runs).
    tokens = CallTokens(secrets.token_bytes(32))
    for c in calls:
        c["token"] = tokens.variables(str(c["delivery"]), c["phone"], reactor.seconds(), 600.0)[TOKEN_VARIABLE]
    calls_path = os.path.join(tmp, "calls.json")
    with open(calls_path, "w") as f:
        json.dump(calls, f)
    bank = SmsBank(reactor, SqlStore(db), SmsConfig(), {})        # the outbox; no modem sends here
    feedback = FeedbackEngine(db, bank, None, EscalationConfig())
    refusals = RefusalAudit(reactor, db)
    peak = [0]
    child = _Child()
    service: dict[tuple[str, str], list[float]] = {}      # (phase, waits_on) -> the server's own times

    def served(seconds, replied_to):
        service.setdefault((child._phase, waits_on(replied_to)), []).append(seconds)
    factory = make_fastagi_factory(reactor, sink=feedback, journal=KeypadJournal(reactor, db),
                                   orders=OrderBook(db), tokens=CallTokenGate(reactor, db, tokens, refusals),
                                   peers=PeerGate(["127.0.0.1"], refusals),
                                   observer=lambda verb, s: peak.__setitem__(0, max(peak[0], len(factory.active))),
                                   service_observer=served)
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=2048)
    floor = reactor.listenTCP(0, baseline_factory(), interface="127.0.0.1", backlog=2048)
    n = args.sessions
    # Started: the collector set as the gateway's entry point sets it (gateway/cli.py).
    from gateway.heap import settle_after_start
    settle_after_start()
    try:
        reactor.spawnProcess(child.protocol, sys.executable, [
            sys.executable, "-m", "bench.agi_sessions", "--client", str(listening.getHost().port),
            "--sessions", str(n), "--ramp", str(args.ramp), "--rounds", str(args.rounds),
            "--seed", str(args.seed), "--baseline-port", str(floor.getHost().port), "--calls", calls_path],
            env=os.environ, path=os.getcwd())
        code = await child.done
    finally:
        await listening.stopListening()
        await floor.stopListening()
    out = child.out
    server_cpu = child.cpu.get("paced", 0.0)     # the IVR rounds only
    counts = await db.run(outcome_counts_tx)
    await refusals.flush()
    db.stop()
    if code != 0:
        return 2
    r = json.loads(out)
    paced = r["paced_turnarounds"]
    p50, p99, mx = (percentile(paced, q) * 1e3 for q in (50, 99, 100))
    bad = sum(x["bad"] for x in r["paced"]) + r["burst"]["bad"]
    floor_bad = sum(x["bad"] for x in r["baseline"])
    sessions_total = n * args.rounds
    cpu_per_session = server_cpu / sessions_total
    wall = sum(x["wall"] for x in r["paced"])
    print(f"paced: {args.rounds} rounds of {n} order calls arriving within {args.ramp:.1f} s, peak {peak[0]} "
          f"sessions at once, {len(paced)} commands, wall {wall:.1f} s")
    print(f"  gateway turnaround per command, as the emulated Asterisk sees it: p50 {p50:.3f} ms, p99 {p99:.3f} ms, "
          f"max {mx:.3f} ms")
    by_wait = r["paced_by_wait"]
    for kind, what in WAITS.items():
        seen, own = by_wait.get(kind, []), service.get(("paced", kind), [])
        print(f"    {what}: {len(seen)} commands, p50 {percentile(seen, 50) * 1e3:.2f} ms, p99 "
              f"{percentile(seen, 99) * 1e3:.2f} ms; the server's own time (reply parsed -> command written) "
              f"p50 {percentile(own, 50) * 1e3:.2f} ms, p99 {percentile(own, 99) * 1e3:.2f} ms")
    print(f"  server CPU {server_cpu:.2f} s for {sessions_total} sessions = {cpu_per_session * 1e3:.2f} ms per "
          f"session (paced rounds only); emulated Asterisk (child) {sum(x['cpu'] for x in r['paced']):.2f} s; "
          f"the bare baseline server {child.cpu.get('baseline', 0.0) / sessions_total * 1e3:.2f} ms per session")
    floor_t = r["baseline_turnarounds"]
    print(f"  baseline, same calls interleaved with each round against a bare line protocol (no parsing, "
          f"no flow): p50 {percentile(floor_t, 50) * 1e3:.3f} ms, p99 {percentile(floor_t, 99) * 1e3:.3f} ms, "
          f"max {percentile(floor_t, 100) * 1e3:.3f} ms")
    print(f"  host load average at the end of the run: {load_average()} on {os.cpu_count()} CPUs "
          f"(a shared machine: re-measure final figures on an idle one)")
    burst = r["burst_turnarounds"]
    print(f"burst (not a target): {n} sessions connecting at once, instant replies: p50 "
          f"{percentile(burst, 50) * 1e3:.1f} ms, p99 {percentile(burst, 99) * 1e3:.1f} ms per command, "
          f"wall {r['burst']['wall']:.2f} s")
    keys = r["paced_keypresses"]
    k50, k99, kmax = (percentile(keys, q) * 1e3 for q in (50, 99, 100))
    confirmed = sum(x["confirmed"] for x in r["paced"])
    print(f"keypress -> answer committed -> confirmation SMS committed -> \"recorded\" played ({args.label}): "
          f"{len(keys)} paced calls, p50 {k50:.1f} ms, p99 {k99:.1f} ms, max {kmax:.1f} ms; "
          f"burst p99 {percentile(r['burst_keypresses'], 99) * 1e3:.1f} ms (not a target)")
    print(f"sessions not completed cleanly: {bad} (baseline: {floor_bad}); calls confirmed: {confirmed} of "
          f"{n * args.rounds} paced; database: {counts['keypresses']} keypresses journalled, {counts['feedback']} "
          f"answers recorded, {counts['confirmations']} confirmation SMS queued, {counts['tokens']} tokens used")
    print(f"RESULT agi_keypress_to_confirmation_p99 {k99:.1f} ms target < 50")
    print(f"RESULT agi_command_p99 {p99:.3f} ms target < 10")
    print(f"RESULT agi_command_p99_no_database {percentile(by_wait.get('none', []), 99) * 1e3:.3f} ms target < 10")
    print(f"RESULT agi_command_p50 {p50:.3f} ms target < 10")
    print(f"RESULT agi_cpu_per_session {cpu_per_session * 1e3:.3f} ms target < 20")
    return 0 if bad == 0 and confirmed == n * args.rounds and peak[0] >= n * 0.9 else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--ramp", type=float, default=2.0, help="seconds over which each round's calls arrive")
    ap.add_argument("--rounds", type=int, default=2, help="paced rounds, pooled")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--baseline-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--calls", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=4, help="database threads (the gateway's default on PostgreSQL)")
    add_arguments(ap)
    args = ap.parse_args(argv)
    if args.client:
        return run_reactor(lambda reactor: client_async(reactor, args))
    if args.sqlite:
        args.threads = 1
    with tempfile.TemporaryDirectory(prefix="yihu-bench-") as tmp, bench_database(args, tmp) as (url, label):
        args.label = label
        print(f"database: {label}, {args.threads} thread(s); load average {load_average()}", flush=True)
        subprocess.run([sys.executable, "-m", "bench.escalation_timers", "--populate", url, "--orders", "500",
                        "--teams", "40", "--seed", str(args.seed), "--spread", "600"], check=True, timeout=600)
        from twisted.logger import globalLogBeginner

        from gateway.logs import make_observer
        with open(f"{tmp}/gateway.log", "w") as logf:      # as in service: the log to a file,
            # through the gateway's observer at its default level (info), as `yihu run` logs
            globalLogBeginner.beginLoggingTo([make_observer("text", "info", logf)], redirectStandardIO=False)
            return run_reactor(lambda reactor: server_async(reactor, args, url, tmp))


def run_reactor(job) -> int:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    outcome = {}

    def done(result):
        outcome["rc"] = result if isinstance(result, int) else 2
        if not isinstance(result, int):
            result.printTraceback()
        reactor.stop()
    Deferred.fromCoroutine(job(reactor)).addTimeout(900, reactor).addBoth(done)
    reactor.run()
    return outcome.get("rc", 2)


if __name__ == "__main__":
    sys.exit(main())
