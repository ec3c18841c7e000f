"""Several real gateway nodes on one database, for the cluster test and `python -m bench.cluster`.

Each node is a `yihu run` child process in drill mode (tests/_gateway_process.py) with its own
data directory, its own embedded emulated modems (its own DATA_DIR/network.jsonl) and its own
HTTP and FastAGI ports.  All of them link to ONE emulated Asterisk, a separate process
(`python -m gateway.ami.emulator.pbx`) on loopback, as several gateways link to one real
Asterisk: its AMI secret is in a file of the shared directory (embedded.asterisk_secret_file),
its FastAGI sessions go to the first node that accepts the connection, and it journals every call
it places, and every hotline call it is told to play (SIGUSR1), to its own network.jsonl.

What the networks saw is counted from those files by the code here, never by the product's.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, text

from tests._gateway_process import ORDER_TEXT, ROOT, ROSTER, GatewayProcess, pause

TOKEN_SECRET = "cluster-test-order-call-key-0123456789abcdef"     # every node verifies every node's calls

NON_FINAL = {"deliveries": ("queued", "requested", "handing", "calling"),
             "sms_messages": ("queued", "sending"),
             "call_attempts": ("due", "placing", "ringing")}


def free_port() -> int:
    """A loopback port free now (the PBX must know the nodes' FastAGI ports before they start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SharedPbx:
    """One emulated Asterisk for every node, in its own process."""

    def __init__(self, shared: Path, agi_ports: list[int]):
        self.dir = shared
        shared.mkdir(parents=True, exist_ok=True)
        self.secret_file = shared / "ami.secret"
        self.port_file = shared / "pbx.port"
        self.journal = shared / "pbx" / "network.jsonl"
        self.agi_ports = agi_ports
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self, timeout: float = 20.0) -> None:
        self.log_path = self.dir / "pbx.log"
        with self.log_path.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.ami.emulator.pbx", "--ami-port", "0",
                 "--port-file", str(self.port_file), "--secret-file", str(self.secret_file),
                 "--journal", str(self.journal), "--prompt-seconds", "0", "--hotline-on-signal", "--user", "yihu",
                 "--agi", ",".join(f"127.0.0.1:{p}" for p in self.agi_ports)],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        waited = 0.0
        while waited < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"emulated PBX exited ({self.proc.returncode}):\n{self.log_path.read_text()}")
            if self.port_file.exists():
                self.port = int(self.port_file.read_text())
                return
            pause(0.05)
            waited += 0.05
        raise AssertionError("emulated PBX not up")

    def hotline_call(self) -> None:
        """A citizen calls 119 (answered by a call-taker after 0.5 s, 1 s of talk)."""
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class Node(GatewayProcess):
    """A gateway node: a GatewayProcess named `name`, linked to the shared PBX."""

    def __init__(self, tmp: Path, database_url: str, name: str, pbx: SharedPbx, agi_port: int, *,
                 modems: int = 4, segment_seconds: float = 0.3, node_timeout_s: float = 4.0,
                 heartbeat_s: float = 1.0, **sections):
        self.name = name
        tmp.mkdir(parents=True, exist_ok=True)
        base = {
            "gateway": {"node_name": name},
            "embedded": {"modems": modems, "segment_seconds": segment_seconds,
                         "asterisk": f"127.0.0.1:{pbx.port}", "asterisk_secret_file": str(pbx.secret_file)},
            "ivr": {"port": agi_port, "token_secret": TOKEN_SECRET},
            "cluster": {"node_timeout_s": node_timeout_s, "heartbeat_s": heartbeat_s},
        }
        for section, values in sections.items():
            base.setdefault(section, {}).update(values)
        super().__init__(tmp, database_url, **base)


def start_cluster(tmp: Path, url: str, names=("node-a", "node-b"), modems=None, **node_options):
    """The shared PBX (started) and one node per name (not yet started; `modems`: each node's
    count, default 4); returns (pbx, [nodes])."""
    ports = [free_port() for _ in names]
    pbx = SharedPbx(tmp / "shared", ports)
    pbx.start()
    modems = modems or [4] * len(names)
    nodes = [Node(tmp / name, url, name, pbx, port, modems=n, **node_options)
             for name, port, n in zip(names, ports, modems)]
    return pbx, nodes


# --- the database side, through this harness's own queries -----------------------------------
def prepare(url: str) -> None:
    from gateway.directory.roster import read_roster
    from gateway.directory.store import import_roster
    from gateway.storage.migrate import upgrade
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        import_roster(conn, read_roster(ROSTER), source="roster", actor="test")
    engine.dispose()


def commit_order(url: str, n: int, voice: bool = True, escalation=None) -> tuple[str, float]:
    """What `yihu order send --target all --voice` commits; a running node sends it.
    Returns (order code, wall-clock time of the commit)."""
    from gateway.escalation.config import EscalationConfig
    from gateway.orders.order import OrderRequest, Target
    from gateway.orders.store import create_order_tx
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            req = OrderRequest(f"CLUSTER-{n}", "rescue", ORDER_TEXT, Target("all"), "same_township", voice=voice,
                               created_by="cli:test")
            created = create_order_tx(conn, req, datetime.now(timezone.utc), escalation or EscalationConfig(),
                                      random.Random(n))
        assert len(created.team_ids) == 40
        return created.code, time.time()
    finally:
        engine.dispose()


def rows(conn, sql: str) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(text(sql))]


def not_final(url: str) -> dict:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            for table, states in NON_FINAL.items():
                q = f"SELECT count(*) FROM {table} WHERE state IN ({', '.join(repr(s) for s in states)})"
                out[table] = conn.execute(text(q)).scalar()
            return out
    finally:
        engine.dispose()


def wait_until_final(url: str, limit: float = 60.0) -> dict:
    waited = 0.0
    while True:
        left = not_final(url)
        if not any(left.values()) or waited >= limit:
            return left
        pause(0.3)
        waited += 0.3


def wait_for(predicate, limit: float, step: float = 0.1) -> bool:
    waited = 0.0
    while waited < limit:
        if predicate():
            return True
        pause(step)
        waited += step
    return predicate()


# --- the count, from the networks' files ----------------------------------------------------
def read_journal(path: Path) -> list[dict]:
    out = []
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue           # a line cut by the kill
    return out


def network_sms(nodes) -> list[dict]:
    """Every segment the nodes' emulated networks accepted, each marked with the node that sent it."""
    out = []
    for node in nodes:
        for r in read_journal(node.journal):
            if r["kind"] == "sms":
                out.append({**r, "node": node.name})
    return out


def audit(url: str, nodes, pbx: SharedPbx) -> dict:
    """The whole run, from the journals, against the database's records."""
    sms = network_sms(nodes)
    pbx_records = read_journal(pbx.journal)
    calls = [r for r in pbx_records if r["kind"] == "call"]
    hotline = [r for r in pbx_records if r["kind"] == "hotline"]
    engine = create_engine(url)
    with engine.connect() as conn:
        messages = rows(conn, "SELECT id, phone, text, parts, purpose FROM sms_messages")
        segments = rows(conn, "SELECT message_id, seq, outcome_unknown FROM sms_segments")
        sms_deliveries = rows(conn, "SELECT id, state FROM deliveries WHERE channel = 'sms'")
        attempts = rows(conn, "SELECT id, delivery_id, channel_id, state, purpose, step_id FROM call_attempts")
        steps = rows(conn, "SELECT s.id, s.action, s.state, t.team_id FROM escalation_steps s "
                           "JOIN order_teams t ON t.id = s.order_team_id")
        hotline_rows = rows(conn, "SELECT call_id, caller FROM hotline_calls")
        arrived = rows(conn, "SELECT payload FROM event_log WHERE kind = 'hotline.arrived'")
    engine.dispose()

    unknown_of = {(s["message_id"], s["seq"]): s["outcome_unknown"] for s in segments}
    by_phone = defaultdict(list)
    by_ref = defaultdict(list)
    for e in sms:
        by_phone[e["phone"]].append(e)
        by_ref[(e["phone"], e["reference"], e["parts"])].append(e)
    missing = []
    for m in messages:                     # the phone can show the whole message
        by_seq = defaultdict(list)
        # a one-part message carries no concatenation reference: its text tells it apart
        ref = m["id"] % 256 if m["parts"] > 1 else None
        for e in by_ref[(m["phone"], ref, m["parts"])]:
            if e["text"] in m["text"]:
                by_seq[e["part"]].append(e["text"])
        whole = (set(by_seq) == set(range(1, m["parts"] + 1))
                 and "".join(by_seq[i][0] for i in range(1, m["parts"] + 1)) == m["text"])
        if not whole:
            missing.append((m["phone"], m["id"], m["purpose"], sorted(by_seq)))
    # Copies of each part a phone received of each text, against one plus the times the database
    # recorded that part's outcome unknown.
    same_text = defaultdict(list)
    for m in messages:
        same_text[(m["phone"], m["text"])].append(m)
    unrecorded, dups = [], 0
    for (phone, text_), ms in same_text.items():
        n = ms[0]["parts"]
        for seq in range(1, n + 1):
            got = sum(1 for e in by_phone[phone] if e["part"] == seq and e["parts"] == n and e["text"] in text_)
            allowed = len(ms) + sum(unknown_of.get((m["id"], seq), 0) for m in ms)
            dups += max(0, got - len(ms))
            if got > allowed:
                unrecorded.append((phone, [m["id"] for m in ms], seq, got))

    # Calls: the PBX's journal against call_attempts.
    placed = Counter(c["channel_id"] for c in calls)
    attempt_of = {a["channel_id"]: a for a in attempts if a["channel_id"]}
    off_record = [cid for cid in placed if cid not in attempt_of]
    twice = [cid for cid, n in placed.items() if n > 1 and attempt_of.get(cid, {}).get("state") != "unknown"]
    # Escalation: each step fired once; an sms_again step's reminder once per phone of the team;
    # a call step's attempt once.
    fired = [s for s in steps if s["state"] == "fired"]
    reminders = Counter(m["phone"] for m in messages if m["purpose"] == "reminder")
    step_calls = Counter(a["step_id"] for a in attempts if a["step_id"] is not None)
    call_steps_twice = [sid for sid, n in step_calls.items() if n > 1]
    # Hotline: each citizen's call once in hotline_calls, its arrival once in the events.
    callers = Counter(h["caller"] for h in hotline)
    recorded = Counter(r["caller"] for r in hotline_rows)
    arrivals = Counter((r["payload"] if isinstance(r["payload"], dict) else json.loads(r["payload"])).get("caller")
                       for r in arrived)
    return {
        "messages": len(messages), "order_messages": sum(1 for m in messages if m["purpose"] == "order"),
        "phones_without_whole_message": len(missing), "missing": missing[:5],
        "sms_deliveries_not_sent": sum(1 for d in sms_deliveries if d["state"] != "sent"),
        "duplicate_segments": dups, "duplicates_not_recorded_unknown": len(unrecorded), "unrecorded": unrecorded[:5],
        "segments_by_node": dict(Counter(e["node"] for e in sms)),
        "calls_placed": sum(placed.values()), "calls_not_on_record": len(off_record),
        "calls_placed_twice_not_unknown": len(twice),
        "attempts_unknown": sum(1 for a in attempts if a["state"] == "unknown"),
        "steps_fired": len(fired), "sms_again_fired": sum(1 for s in fired if s["action"] == "sms_again"),
        "reminder_messages": sum(reminders.values()), "call_steps_placed_twice": len(call_steps_twice),
        "hotline_calls_played": sum(callers.values()),
        "hotline_calls_not_recorded_once": {c: recorded.get(c, 0) for c in callers if recorded.get(c) != 1},
        "hotline_arrivals_not_once": {c: arrivals.get(c, 0) for c in callers if arrivals.get(c) != 1},
        "non_final": None,
    }


def assert_exactly_once(report: dict, url: str) -> None:
    report["non_final"] = not_final(url)
    print(json.dumps(report, ensure_ascii=False))
    assert report["order_messages"] == 80
    assert report["phones_without_whole_message"] == 0, report["missing"]
    assert report["sms_deliveries_not_sent"] == 0
    assert report["duplicates_not_recorded_unknown"] == 0, report["unrecorded"]
    assert report["calls_placed"] >= 80 and report["calls_not_on_record"] == 0
    assert report["calls_placed_twice_not_unknown"] == 0
    # 40 teams, one sms_again step each (due at once), its reminder to commander and deputy
    assert report["sms_again_fired"] == 40 and report["reminder_messages"] == 80
    assert report["call_steps_placed_twice"] == 0
    assert report["hotline_calls_played"] >= 1
    assert report["hotline_calls_not_recorded_once"] == {}, report["hotline_calls_not_recorded_once"]
    assert report["hotline_arrivals_not_once"] == {}, report["hotline_arrivals_not_once"]
    assert not any(report["non_final"].values()), report["non_final"]


def open_messages_of(url: str, node: str) -> list[dict]:
    """The SMS messages `node` owns and has not finished, read right after it was killed (before
    anyone may take them over).  On a schema without owners (before issue 13): none."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                text("SELECT id, phone, text, parts FROM sms_messages "
                     "WHERE owner_node = :node AND state IN ('queued', 'sending')"), {"node": node})]
    except Exception:  # noqa: BLE001 - no owner_node column: nobody owns anything
        return []
    finally:
        engine.dispose()


def claimed_after(survivor, dead: str, killed_at: float) -> float | None:
    """Seconds from the kill to the survivor's SMS bank taking the dead node's messages (its log
    line, the survivor process's own clock), or None."""
    from datetime import datetime
    taken = [datetime.fromisoformat(r["time"]).timestamp() for r in survivor.records()
             if r.get("namespace") == "sms.bank" and r.get("dead") == dead]
    return min(taken) - killed_at if taken else None


def takeover_seconds(nodes, dead: str, killed_at: float, owned: list[dict]) -> dict:
    """Seconds from the kill to the first and the last segment a survivor sent of the messages the
    dead node owned, unfinished, when it was killed (from the survivors' journals)."""
    keys = {}
    for m in owned:
        keys[(m["phone"], m["id"] % 256 if m["parts"] > 1 else None, m["parts"])] = m
    taken = []
    for e in network_sms(nodes):
        m = keys.get((e["phone"], e["reference"], e["parts"]))
        if m is not None and e["node"] != dead and e["at"] > killed_at and e["text"] in m["text"]:
            taken.append(e)
    times = sorted(e["at"] - killed_at for e in taken)
    return {"owned_by_dead": len(owned), "messages_finished_by_survivor":
            len({(e["phone"], e["reference"], e["parts"]) for e in taken}),
            "segments_by_survivor": len(taken),
            "first_s": times[0] if times else None, "last_s": times[-1] if times else None}
