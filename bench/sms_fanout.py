"""Makespan of a group-call order (2-part Chinese SMS to 80 phones) on 1, 2, 4 and 8 modems.

The modems are emulated in a separate process (`python -m sms.emulator`) on pseudo-terminals,
with a fixed time per segment; the gateway side is the product: serial ports through the
reactor, the SQLite outbox (every segment committed before it is submitted), status reports.
Printed beside the ideal ceil(segments / modems) x time-per-segment, with the gateway's CPU time
per segment (this process, database threads included).

    .venv/bin/python -m bench.sms_fanout [--segment-time 0.8] [--modems 1,2,4,8]

The four configurations run side by side in separate processes (each its own gateway reactor,
database and emulator process), so that the run stays under 3 minutes at 0.8 s per segment.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

ORDER = ("【县应急指挥中心】命令0427：请立即集合队伍，携带破拆与照明装备，30分钟内到达城关镇东街12号集结点，"
         "到达后回复“0427 到达”，指挥长张𠀀三。")
PHONES = 80


def start_emulator(n: int, seg_time: float, directory: str):
    proc = subprocess.Popen([sys.executable, "-m", "sms.emulator", "--modems", str(n), "--segment-time",
                             str(seg_time), "--report-delay", "0.5", "--dir", directory],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    paths = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.strip() == "READY":
            return proc, paths
        paths.append(line.split()[1])
    proc.kill()
    raise RuntimeError("emulator did not start")


def run_one(reactor, n: int, seg_time: float, workdir: str):
    from twisted.internet import defer, task

    from gateway.storage import Database
    from gateway.storage.migrate import upgrade
    from sms.bank import SmsBank, serial_opener
    from sms.config import SmsConfig
    from sms.modem import READY
    from sms.store import SqlStore

    url = f"sqlite:///{workdir}/bench-{n}.sqlite"
    upgrade(url)
    db = Database(reactor, url)
    db.start()
    proc, paths = start_emulator(n, seg_time, os.path.join(workdir, f"ports{n}"))
    config = SmsConfig(expected_segment_seconds=seg_time, probe_interval=60.0, submit_timeout=30.0)
    bank = SmsBank(reactor, SqlStore(db), config, {p: serial_opener(reactor, p, 115200) for p in paths})
    result = {}

    @defer.inlineCallbacks
    def go():
        yield bank.start()
        while not all(s.driver.state == READY for s in bank.slots.values()):
            yield task.deferLater(reactor, 0.05, lambda: None)
        sent_at = {}
        all_sent = defer.Deferred()

        def observe(mid, state):
            if state == "sent":
                sent_at.setdefault(mid, time.monotonic())
                if len(sent_at) == PHONES and not all_sent.called:
                    all_sent.callback(None)
        bank.add_observer(observe)
        cpu0, t0 = time.process_time(), time.monotonic()
        ids = yield defer.gatherResults([bank.enqueue(f"+86139{i:08d}", ORDER, purpose="order")
                                         for i in range(PHONES)])
        yield all_sent
        result["makespan"] = max(sent_at.values()) - t0
        result["cpu"] = time.process_time() - cpu0
        result["segments"] = sum(len(bank.messages[i].segments) for i in ids)

    def stop():
        if reactor.running:          # the guard and the finish may both come
            reactor.stop()

    def finish(outcome):
        bank.stop()
        reactor.callLater(0.2, stop)
        return outcome

    reactor.callWhenRunning(lambda: go().addBoth(finish).addBoth(lambda r: result.__setitem__("outcome", [r])))
    guard = reactor.callLater(172, stop)
    reactor.run()
    if guard.active():
        guard.cancel()
    proc.stdin.close()
    proc.terminate()
    proc.wait(5)
    db.stop()
    outcome = result.pop("outcome", None)
    if outcome is None:
        raise RuntimeError(f"{n} modems: fan-out did not finish")
    if hasattr(outcome[0], "raiseException"):
        outcome[0].raiseException()
    return result


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--segment-time", type=float, default=0.8)
    ap.add_argument("--modems", default="1,2,4,8")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one is not None:
        # one configuration, in its own process (its own reactor, database and emulator)
        from twisted.internet import reactor
        with tempfile.TemporaryDirectory(prefix="yihu-bench-") as workdir:
            r = run_one(reactor, args.one, args.segment_time, workdir)
        print("JSON " + json.dumps(r), flush=True)
        return

    # The configurations run side by side, each in its own process: the modems' time dominates
    # (the gateway is idle >90% of the time), and the 1-modem run alone takes 160 segment-times.
    counts = [int(x) for x in args.modems.split(",")]
    procs = {n: subprocess.Popen([sys.executable, "-m", "bench.sms_fanout", "--one", str(n), "--segment-time",
                                  str(args.segment_time)], stdout=subprocess.PIPE, text=True) for n in counts}
    results = {}
    for n, p in procs.items():
        out, _ = p.communicate(timeout=178)
        for line in out.splitlines():
            if line.startswith("JSON "):
                results[n] = json.loads(line[5:])
        if n not in results:
            raise SystemExit(f"{n} modem(s): no result (exit {p.returncode})")
    print(f"fan-out: {PHONES} phones x 2 parts (UCS-2, 8-bit concatenation reference), "
          f"{args.segment_time:.2f} s per segment, SQLite outbox, emulated modems on ptys")
    rows = []
    for n in counts:
        r = results[n]
        ideal = math.ceil(r["segments"] / n) * args.segment_time
        rows.append((n, r, ideal))
        print(f"{n} modem(s): {r['segments']} segments, makespan {r['makespan']:.2f} s, ideal {ideal:.2f} s, "
              f"ratio {r['makespan'] / ideal:.3f}, gateway CPU {1000 * r['cpu'] / r['segments']:.2f} ms/segment",
              flush=True)
    n, r, ideal = rows[-1]
    cpu_ms = 1000 * sum(x[1]["cpu"] for x in rows) / sum(x[1]["segments"] for x in rows)
    print(f"RESULT sms_fanout_makespan_ratio_{n}_modems {r['makespan'] / ideal:.3f} ratio target <= 1.05")
    print(f"RESULT sms_fanout_makespan_{n}_modems {r['makespan']:.2f} s target <= {ideal * 1.05:.2f}")
    print(f"RESULT sms_gateway_cpu_per_segment {cpu_ms:.2f} ms target <= {1000 * args.segment_time * 0.05:.1f}")


if __name__ == "__main__":
    main()
