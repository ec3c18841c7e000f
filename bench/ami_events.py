"""AMI events per second: bytes on a loopback socket -> parsed events (-> hotline tracker).

    python -m bench.ami_events [--mb 32] [--runs 5] [--check]

The stream: the server side of every recording in tests/data/asterisk-22, repeated with
rewritten unique ids (Uniqueid/Linkedid, channel suffixes, bridge ids, ActionIDs) until it is
``--mb`` megabytes, behind one banner.  A separate process serves it on 127.0.0.1; each client
connects, reads to EOF and counts events, all in the same run:

- yihu: ``AmiClientProtocol`` on the Twisted reactor, each event passed through ``AmiLink``'s
  dispatch (as in production) to one listener: a no-op (parsing), ``msg.first`` (all headers:
  every line of every event split into key and value and put in the first-value dict; a
  repeated header such as ``ChanVariable`` keeps its first value there, and all of them stay
  readable with ``getall`` from the kept text), or ``HotlineTracker.handle`` (parsing +
  tracking; the tracker's database writes happen per call change, not per event, and are
  left out);
- asterisk-ami 0.1.7: ``AMIClient`` with its reader thread and an event listener (its own
  parser builds every header of every event: a dict, ``ChanVariable`` lines as a sub-dict);
- pyst2 0.5.1: ``Manager`` with its reader, message and dispatch threads and a ``*`` handler.
  Under Python 3 it dies on the first ``ChanVariable`` header (``dict.has_key``), so it is run
  with that one line shimmed, and it reads the socket a byte at a time, so it gets a prefix of
  the stream and a time limit.

A second table runs each library's parsing code on the same bytes in memory (no socket).

Like for like: asterisk-ami and pyst2 build every header of every event; the gateway reads the
few headers it needs on demand.  The headline (a RESULT) is therefore "yihu all headers": every
event's headers materialised, against asterisk-ami, per CPU second of the client's process over
the socket (all its threads: asterisk-ami's reader thread included).  CPU time, not the wall
clock: on a shared machine the wall clock also counts the sender's and other processes' turns
(both are printed).  The clients run in interleaved rounds (each once per round) and a ratio is
the median of the rounds' ratios, so that a change in the machine's load hits both sides alike.
Targets: all headers >= 1.5x asterisk-ami, parsing + tracking >= 1.0x.
Left out: the hotline tracker's database writes (per call change, not per event), and the
socket's sender (a separate process).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The recordings of a real Asterisk 22 kept in the project (tests/data/asterisk-22).
RECORDINGS = REPO / "tests" / "data" / "asterisk-22"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


# --- the stream ----------------------------------------------------------------------------------

def recorded_server_bytes() -> list[bytes]:
    out = []
    for p in sorted(RECORDINGS.glob("*.ami.jsonl")):
        data = b"".join(json.loads(line)["data"].encode("utf-8")
                        for line in p.read_text(encoding="utf-8").splitlines()
                        if line.strip() and json.loads(line)["dir"] == "<")
        data = data.replace(BANNER, b"")
        # A Logoff's Goodbye ends a session (asterisk-ami stops reading at any Goodbye): a long
        # session has none in the middle.
        data = re.sub(rb"Response: Goodbye\r\n(?:[^\r\n]+\r\n)*\r\n", b"", data)
        out.append(data)
    return out


_UID = re.compile(rb"\b(17960\d{5})\.(\d+)\b")
_SUFFIX = re.compile(rb"-([0-9a-f]{8})(;[12])")
_BRIDGE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_AID = re.compile(rb"^ActionID: ([^\r\n]*)", re.M)


def rewrite(data: bytes, i: int) -> bytes:
    data = _UID.sub(lambda m: b"%d.%d" % (1800000000 + i, int(m.group(2))), data)
    data = _SUFFIX.sub(lambda m: b"-%08x%s" % ((int(m.group(1), 16) + i * 0x100) & 0xffffffff,
                                               m.group(2)), data)
    data = _BRIDGE.sub(lambda m: str(uuid.uuid5(uuid.NAMESPACE_OID,
                                                f"{i}{m.group(0)}")).encode(), data)
    return _AID.sub(lambda m: b"ActionID: %s-%d" % (m.group(1), i), data)


def build_stream(mb: float) -> bytes:
    parts = recorded_server_bytes()
    out = [BANNER]
    size, i = 0, 0
    while size < mb * 1024 * 1024:
        for p in parts:
            chunk = rewrite(p, i)
            out.append(chunk)
            size += len(chunk)
        i += 1
    return b"".join(out)


# --- the blaster (a separate process: the sender's work is not in the measurement) -------------

BLASTER = r"""
import socket, sys
data = open(sys.argv[1], "rb").read()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    limit = sys.stdin.readline().strip()
    n = int(limit) if limit else len(data)
    try:
        c.sendall(data[:n])
    except OSError:
        pass
    c.close()
"""


class Blaster:
    def __init__(self, path: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", BLASTER, str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def arm(self, limit: int | None = None):
        """Tell the blaster how much to send to the next connection."""
        self.proc.stdin.write(f"{limit or ''}\n")
        self.proc.stdin.flush()

    def close(self):
        self.proc.kill()
        self.proc.wait()


# --- clients over the socket -------------------------------------------------------------------

def run_yihu(port: int, track: bool, materialise: bool = False) -> tuple[int, float, float]:
    """Our client on the Twisted reactor (one run per process: the reactor is not restartable,
    so this is called in a child process)."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    from gateway.ami.link import AmiLink
    from gateway.ami.protocol import AmiClientProtocol
    from gateway.hotline.tracker import HotlineTracker
    # Events reach listeners through the link's dispatch, as in production (the link is never
    # started: the bench connects the protocol itself and sends no Login).
    link = AmiLink(reactor, "127.0.0.1", port, username="bench", secret="-")
    if track:
        link.add_event_listener(HotlineTracker(lambda call, kinds: None, clock=time.time).handle)
    elif materialise:
        def on_event_all_headers(msg):
            msg.first                   # every header materialised, like the other libraries
        link.add_event_listener(on_event_all_headers)
    else:
        link.add_event_listener(lambda msg: None)
    t = {}
    proto = AmiClientProtocol(reactor, on_event=link._dispatch)

    def lost(p, reason):
        t["end"], t["cpu_end"] = time.perf_counter(), time.process_time()
        reactor.stop()
    proto.on_connection_lost = lost
    t["start"], t["cpu"] = time.perf_counter(), time.process_time()
    connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
    reactor.run()
    return proto.events_received, t["end"] - t["start"], t["cpu_end"] - t["cpu"]


def run_asterisk_ami(port: int) -> tuple[int, float, float]:
    from asterisk.ami import AMIClient
    count = [0]
    done = threading.Event()

    def on_event(source, event):
        count[0] += 1
    client = AMIClient(address="127.0.0.1", port=port, timeout=30)
    client.add_listener(on_event=on_event, on_disconnect=lambda source, error: done.set())
    start, cpu = time.perf_counter(), time.process_time()
    client.connect()
    done.wait(600)
    return count[0], time.perf_counter() - start, time.process_time() - cpu


def _pyst2_shim():
    import asterisk.manager as m

    class HasKeyDict(dict):
        def has_key(self, k):            # pyst2 0.5.1 still calls Python 2's dict.has_key
            return k in self

    class Msg(m.ManagerMsg):
        def parse(self, response):
            self.headers = HasKeyDict()
            return super().parse(response)
    m.ManagerMsg = Msg
    return m


def run_pyst2(port: int, time_limit: float) -> tuple[int, float, float]:
    m = _pyst2_shim()
    count = [0]
    mgr = m.Manager()
    mgr.register_event("*", lambda ev, manager: count.__setitem__(0, count[0] + 1))
    start, cpu = time.perf_counter(), time.process_time()
    mgr.connect("127.0.0.1", port)
    mgr.event_dispatch_thread.join(time_limit)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    n = count[0]
    mgr._running.clear()
    return n, elapsed, cpu


# --- the same bytes in memory ------------------------------------------------------------------------

def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def mem_yihu(data: bytes, track: bool, materialise: bool = False) -> tuple[int, float]:
    from gateway.ami.parser import AmiParser
    from gateway.hotline.tracker import HotlineTracker
    handle = HotlineTracker(lambda call, kinds: None, clock=time.time).handle if track else None
    p = AmiParser()
    n = 0
    start = time.perf_counter()
    for i in range(0, len(data), 65536):
        for msg in p.feed(data[i:i + 65536]):
            if msg.kind == "event":
                n += 1
                if handle is not None:
                    handle(msg)
                elif materialise:
                    msg.first
    return n, time.perf_counter() - start


class _FakeSock:
    def __init__(self, data: bytes):
        self.buf = io.BytesIO(data)

    def recv(self, n):
        return self.buf.read(n)

    def close(self):
        pass


def mem_asterisk_ami(data: bytes) -> tuple[int, float]:
    from asterisk.ami import AMIClient
    count = [0]
    client = AMIClient()
    client.add_listener(on_event=lambda source, event: count.__setitem__(0, count[0] + 1))
    client._socket = _FakeSock(data)
    client.finished = threading.Event()
    start = time.perf_counter()
    client.listen()                     # their reader loop and parser, in this thread
    return count[0], time.perf_counter() - start


def mem_pyst2(data: bytes) -> tuple[int, float]:
    m = _pyst2_shim()
    mgr = m.Manager()
    mgr._sock = io.BytesIO(data)
    mgr._connected.set()
    mgr._running.set()
    n = 0
    start = time.perf_counter()
    mgr._receive_data()                 # their line reader, in this thread
    q = mgr._message_queue
    while not q.empty():
        lines = q.get()
        if not lines:
            continue
        msg = m.ManagerMsg(lines)
        if msg.has_header("Event"):
            m.Event(msg)
            n += 1
    elapsed = time.perf_counter() - start
    mgr._running.clear()
    mgr._connected.clear()
    return n, elapsed


# --- main --------------------------------------------------------------------------------------------

def _child(args):
    port, mode = int(args[0]), args[1]
    n, secs, cpu = run_yihu(port, mode == "1", mode == "2")
    print(json.dumps({"events": n, "seconds": secs, "cpu": cpu}))


def best(results):
    """(events, seconds[, cpu seconds]) of the fastest run (by CPU time where measured)."""
    return max(results, key=lambda r: r[0] / r[-1] if r[-1] else 0)


def cpu_rate(r) -> float:
    """Events per CPU second of the client's process (every thread of it): what the client
    costs, robust on a shared machine where the wall clock also counts other processes' turns."""
    return r[0] / r[-1] if r[-1] else 0.0


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=32.0,
                    help="stream size in MiB (default 32: runs of a second or more, not start-up costs)")
    ap.add_argument("--runs", type=int, default=5,
                    help="rounds over the socket (each client once per round, interleaved); the "
                         "table shows each client's best, the ratios are medians of per-round ratios")
    ap.add_argument("--pyst2-seconds", type=float, default=10.0,
                    help="time limit for pyst2 (it reads one byte per system call)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args(argv)

    data = build_stream(args.mb)
    import tempfile
    with tempfile.NamedTemporaryFile(delete=False, suffix=".ami") as f:
        f.write(data)
        path = Path(f.name)
    from gateway.ami.parser import iter_messages
    total_events = sum(1 for m in iter_messages(data) if m.kind == "event")
    print(f"stream: {len(data) / 1048576:.1f} MiB, {total_events} events "
          f"(tests/data/asterisk-22 server side, repeated with rewritten ids)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.runs} interleaved rounds "
          f"over the socket (table: each client's best; ratios: median of the rounds' ratios)\n")

    blaster = Blaster(path)
    rows = {}
    try:
        def child(mode):
            blaster.arm()
            out = subprocess.run([sys.executable, "-m", "bench.ami_events", "--child",
                                  str(blaster.port), mode],
                                 cwd=REPO, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            return r["events"], r["seconds"], r["cpu"]
        def ami_run():
            blaster.arm()
            return run_asterisk_ami(blaster.port)
        # Interleaved: each round runs every client once, so that a change in the machine's
        # load hits both sides of a ratio alike; the ratios are taken within a round.
        runs = {"yihu parse": [], "yihu all headers": [], "yihu parse+track": [],
                "asterisk-ami": []}
        for _ in range(args.runs):
            runs["yihu all headers"].append(child("2"))
            runs["asterisk-ami"].append(ami_run())
            runs["yihu parse"].append(child("0"))
            runs["yihu parse+track"].append(child("1"))
        for name, results in runs.items():
            rows[name] = best(results)
        # pyst2: a prefix that it can get through within its time limit.
        prefix = min(len(data), 2 * 1024 * 1024)
        blaster.arm(prefix)
        rows["pyst2 (shimmed)"] = run_pyst2(blaster.port, args.pyst2_seconds)
    finally:
        blaster.close()
        path.unlink()

    print("Over a loopback socket (client connects, reads to EOF; events counted by the client);")
    print("events per wall second, and per CPU second of the client's process (all its threads):")
    print(f"  {'client':<20} {'events':>9} {'wall s':>8} {'events/s':>10} {'CPU s':>7} {'ev/CPU-s':>10} "
          f"{'best vs best (wall, CPU)':>28}")
    base = rows["asterisk-ami"][0] / rows["asterisk-ami"][1]
    cbase = cpu_rate(rows["asterisk-ami"])
    for name, (n, secs, cpu) in rows.items():
        rate = n / secs if secs else 0
        print(f"  {name:<20} {n:>9} {secs:>8.3f} {rate:>10.0f} {cpu:>7.3f} {n / cpu if cpu else 0:>10.0f} "
              f"{rate / base:>16.2f}x {cpu_rate((n, secs, cpu)) / cbase:>9.2f}x")
    print("  (yihu parse: framing, kind, name, ActionID matching; headers are read on demand."
          "\n   yihu all headers: every event's headers materialised, as asterisk-ami and pyst2 do."
          "\n   pyst2 gets at most a 2 MiB prefix and a time limit: it reads one byte per recv().)")

    mem = {"yihu parse": best([mem_yihu(data, False) for _ in range(args.runs)]),
           "yihu all headers": best([mem_yihu(data, False, True) for _ in range(args.runs)]),
           "yihu parse+track": best([mem_yihu(data, True) for _ in range(args.runs)]),
           "asterisk-ami": best([mem_asterisk_ami(data) for _ in range(args.runs)]),
           "pyst2 (shimmed)": best([mem_pyst2(data[:prefix_mem(data)]) for _ in range(1)])}
    mbase = mem["asterisk-ami"][0] / mem["asterisk-ami"][1]
    print("\nIn memory (each library's reader and parser on the same bytes, one thread, no socket):")
    for name, (n, secs) in mem.items():
        rate = n / secs if secs else 0
        print(f"  {name:<20} {n:>9} {secs:>8.3f} {rate:>10.0f} {rate / mbase:>15.2f}x")

    def paired(name):
        """Median over the rounds of (yihu's CPU rate / asterisk-ami's in the same round)."""
        ratios = sorted(cpu_rate(y) / cpu_rate(a) for y, a in zip(runs[name], runs["asterisk-ami"]))
        return statistics.median(ratios), ratios
    r_parse, _ = paired("yihu parse")
    r_all, all_ratios = paired("yihu all headers")
    r_track, _ = paired("yihu parse+track")
    r_all_wall = (rows["yihu all headers"][0] / rows["yihu all headers"][1]) / base
    r_all_mem = (mem["yihu all headers"][0] / mem["yihu all headers"][1]) / mbase
    ok = r_all >= 1.5 and r_track >= 1.0
    counts_ok = rows["yihu parse"][0] == rows["asterisk-ami"][0] == total_events
    print(f"\nlike for like (every header materialised, as asterisk-ami does), per CPU second over the socket: "
          f"{r_all:.2f}x asterisk-ami (median of {len(all_ratios)} interleaved rounds: "
          f"{', '.join(f'{r:.2f}' for r in all_ratios)}; wall clock {r_all_wall:.2f}x, in memory {r_all_mem:.2f}x); "
          f"headers on demand (what the gateway does): {r_parse:.2f}x; parsing+tracking {r_track:.2f}x; "
          f"event counts agree: {'yes' if counts_ok else 'NO'}")
    print(f"load average {load_average()}  (a shared machine: re-measure final figures on an idle one)")
    print(f"RESULT ami_events_per_cpu_s {cpu_rate(rows['yihu all headers']):.0f} events/s target >= {1.5 * cbase:.0f}")
    print(f"RESULT ami_all_headers_vs_asterisk_ami {r_all:.2f} ratio target >= 1.5")
    print(f"RESULT ami_on_demand_vs_asterisk_ami {r_parse:.2f} ratio target >= 1.5")
    print(f"RESULT ami_parse_track_vs_asterisk_ami {r_track:.2f} ratio target >= 1.0")
    return 0 if (ok and counts_ok) or not args.check else 1


def prefix_mem(data: bytes) -> int:
    """pyst2's in-memory reader is fast enough for 2 MiB; cut at a message boundary."""
    cut = min(len(data), 2 * 1024 * 1024)
    i = data.rfind(b"\r\n\r\n", 0, cut)
    return i + 4 if i > 0 else cut


if __name__ == "__main__":
    sys.exit(main())
