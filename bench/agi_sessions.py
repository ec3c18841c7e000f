"""500 concurrent FastAGI sessions against the gateway's FastAGI server on loopback.

    .venv/bin/python -m bench.agi_sessions [--sessions 500] [--ramp 2] [--rounds 2] [--seed 1]

The server (the product's FastAgiFactory with its four flows, an in-memory journal and feedback
engine, so the figures are the IVR's own cost and not the database's) runs in this process.
Asterisk's side is the project's emulator, run as a CHILD PROCESS (`--client PORT`), so that the
server's CPU and garbage collection are measured alone.  On a 2-core host the two share the CPU.

Each session is a whole order call (ANSWER, GET VARIABLE x3, the order read out, GET DATA, key 1,
the confirmation, HANGUP: 13 commands).

Headline (paced): in each round the calls arrive within --ramp seconds and all stay up together
(peak concurrency is reported); prompts "play" for 0.3-1.5 s (compressed: real prompts are longer,
so real load is lighter).  Time per command = the gateway's turnaround as Asterisk sees it: from
the emulator writing a reply (or the agi_ environment) to it receiving the gateway's next
command; prompt time is not in it.  All rounds are pooled into the percentiles.
CPU per session = the server process's CPU over the paced rounds / sessions.

For scale, in the same run: a BASELINE round after each paced round (the same calls and pacing
against a bare line protocol in this process that sends the same 13 commands with no parsing, no
session and no flow: the floor that the host and the reactor set), the server's own service
time (from a parsed reply to its next command), and the host's load average.

Also shown, not a target: a lockstep burst (all sessions connect at once, instant replies), where
a command waits behind the other sessions' work on the one reactor.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time

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
    'STREAM FILE yihu/order-intro "01234"', 'SAY DIGITS 0427 "01234"', "GET DATA yihu/order-menu 5000 1",
    'STREAM FILE yihu/recorded ""', 'STREAM FILE yihu/status-received ""', 'STREAM FILE yihu/for-order ""',
    'SAY DIGITS 0427 ""', 'STREAM FILE yihu/goodbye ""', "HANGUP"]


def baseline_factory():
    """The floor: a bare line protocol that sends the same 13 commands, one per reply, with no
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

async def run_round(reactor, port, n, *, ramp, pace, turnarounds):
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.task import deferLater
    from ivr.emulator import Press, ScriptedCaller, place_call

    async def one(i):
        if ramp:
            await deferLater(reactor, ramp * i / n, lambda: None)
        return await place_call(
            reactor, "127.0.0.1", port, "order?order=0427", caller=ScriptedCaller([Press("1")]),
            variables={"ORDER_CODE": "0427", "YIHU_PHONE": "+8613805761234", "YIHU_DELIVERY": str(i)},
            idle_timeout=60, pace=pace, on_turnaround=turnarounds.append)
    t0, c0 = time.perf_counter(), cpu_seconds()
    records = await gatherResults([Deferred.fromCoroutine(one(i)) for i in range(n)], consumeErrors=True)
    bad = [r for r in records if r.closed_by != "gateway" or not r.commands or r.commands[-1] != "HANGUP"]
    return {"wall": time.perf_counter() - t0, "cpu": cpu_seconds() - c0, "bad": len(bad),
            "commands": sum(len(r.commands) for r in records)}


def phase(name):
    """Tell the server process which phase starts, so it can attribute its CPU time."""
    sys.stderr.write(f"PHASE {name}\n")
    sys.stderr.flush()


async def client_async(reactor, args):
    rng = random.Random(args.seed)

    def pace(line):
        return rng.uniform(0.3, 1.5) if line.startswith(MEDIA) else 0.0
    out = {"paced": [], "paced_turnarounds": [], "burst_turnarounds": [], "baseline_turnarounds": []}
    phase("warmup")
    await run_round(reactor, args.client, min(50, args.sessions), ramp=0, pace=None, turnarounds=[])  # warm-up
    for _ in range(args.rounds):
        phase("paced")
        out["paced"].append(await run_round(reactor, args.client, args.sessions, ramp=args.ramp, pace=pace,
                                            turnarounds=out["paced_turnarounds"]))
        # the floor, at the same moment: same calls, same pacing, against the bare protocol
        phase("baseline")
        out.setdefault("baseline", []).append(await run_round(
            reactor, args.baseline_port, args.sessions, ramp=args.ramp, pace=pace,
            turnarounds=out["baseline_turnarounds"]))
    phase("burst")
    out["burst"] = await run_round(reactor, args.client, args.sessions, ramp=0, pace=None,
                                   turnarounds=out["burst_turnarounds"])
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


async def server_async(reactor, args):
    from ivr.drill import DrillKeypadSink
    from ivr.journal import MemoryJournal
    from ivr.service import make_fastagi_factory

    peak = [0]
    service: list[float] = []
    sink = DrillKeypadSink({"+8613805761234": ["0427"]})
    factory = make_fastagi_factory(reactor, sink=sink, journal=MemoryJournal(reactor),
                                   observer=lambda verb, s: peak.__setitem__(0, max(peak[0], len(factory.active))),
                                   service_observer=service.append)
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=2048)
    floor = reactor.listenTCP(0, baseline_factory(), interface="127.0.0.1", backlog=2048)
    n = args.sessions
    child = _Child()
    try:
        reactor.spawnProcess(child.protocol, sys.executable, [
            sys.executable, "-m", "bench.agi_sessions", "--client", str(listening.getHost().port),
            "--sessions", str(n), "--ramp", str(args.ramp), "--rounds", str(args.rounds),
            "--seed", str(args.seed), "--baseline-port", str(floor.getHost().port)],
            env=os.environ, path=os.getcwd())
        code = await child.done
    finally:
        await listening.stopListening()
        await floor.stopListening()
    out = child.out
    server_cpu = child.cpu.get("paced", 0.0)     # the IVR rounds only
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
    print(f"  gateway turnaround per command: p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {mx:.3f} ms")
    print(f"  server CPU {server_cpu:.2f} s for {sessions_total} sessions = {cpu_per_session * 1e3:.2f} ms per "
          f"session (paced rounds only); emulated Asterisk (child) {sum(x['cpu'] for x in r['paced']):.2f} s; "
          f"the bare baseline server {child.cpu.get('baseline', 0.0) / sessions_total * 1e3:.2f} ms per session")
    print(f"  the server's own time from a reply to its next command (all phases): p50 "
          f"{percentile(service, 50) * 1e3:.3f} ms, p99 {percentile(service, 99) * 1e3:.3f} ms, "
          f"max {percentile(service, 100) * 1e3:.3f} ms")
    floor_t = r["baseline_turnarounds"]
    print(f"  baseline, same calls interleaved with each round against a bare line protocol (no parsing, "
          f"no flow): p50 {percentile(floor_t, 50) * 1e3:.3f} ms, p99 {percentile(floor_t, 99) * 1e3:.3f} ms, "
          f"max {percentile(floor_t, 100) * 1e3:.3f} ms")
    with open("/proc/loadavg") as f:
        print(f"  host load average during the run: {f.read().split()[0]} on {os.cpu_count()} CPUs")
    burst = r["burst_turnarounds"]
    print(f"burst (not a target): {n} sessions connecting at once, instant replies: p50 "
          f"{percentile(burst, 50) * 1e3:.1f} ms, p99 {percentile(burst, 99) * 1e3:.1f} ms per command, "
          f"wall {r['burst']['wall']:.2f} s")
    print(f"sessions not completed cleanly: {bad} (baseline: {floor_bad}); keypad answers recorded: "
          f"{len(sink.answers)}")
    print(f"RESULT agi_command_p99 {p99:.3f} ms target < 10")
    print(f"RESULT agi_command_p50 {p50:.3f} ms target < 10")
    print(f"RESULT agi_cpu_per_session {cpu_per_session * 1e3:.3f} ms target < 20")
    return 0 if bad == 0 and peak[0] >= n * 0.9 else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--ramp", type=float, default=2.0, help="seconds over which each round's calls arrive")
    ap.add_argument("--rounds", type=int, default=2, help="paced rounds, pooled")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--baseline-port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    outcome = {}

    def done(result):
        outcome["rc"] = result if isinstance(result, int) else 2
        if not isinstance(result, int):
            result.printTraceback()
        reactor.stop()
    job = client_async(reactor, args) if args.client else server_async(reactor, args)
    Deferred.fromCoroutine(job).addTimeout(115, reactor).addBoth(done)
    reactor.run()
    return outcome.get("rc", 2)


if __name__ == "__main__":
    sys.exit(main())
