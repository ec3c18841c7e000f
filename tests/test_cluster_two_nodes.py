"""Two gateway nodes on one PostgreSQL database: no double send, no lost work, when one dies.

Two real `yihu run` processes in drill mode (node-a, node-b), each with 4 embedded emulated
modems and its own network journal, both linked to ONE emulated Asterisk (a separate process,
tests/_cluster.py).  An order to all 40 teams with voice, and an escalation step due at once for
every team (an SMS reminder to commander and deputy); a citizen calls 119 during the run.  Then:

  (a) node-b killed with -9 during the fan-out;
  (b) node-b restarted during the fan-out: SIGTERM and start, then kill -9 and start once its
      heartbeat is older than node_timeout_s.

Counted from the emulated networks' files by tests/_cluster.py: every phone got every message
whole, no part twice unless the database records its outcome unknown; every call placed once and
on record; every escalation step fired once (its reminder once per phone); the hotline call in
hotline_calls once and its arrival event once; nothing left unfinished.  After the kill the
survivor sends the rest of the messages node-b had half sent within node_timeout_s plus one
segment time.

Also: a second process with a live node's name is refused (exit 2), and so is a second process
on one SQLite file.  `-m slow` runs kills at random moments with a random seed.
"""
from __future__ import annotations

import random
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests._cluster import (claimed_after, Node, assert_exactly_once, audit, commit_order, free_port, network_sms, open_messages_of,
                            prepare, start_cluster, takeover_seconds, wait_for, wait_until_final)
from tests._gateway_process import ROOT, GatewayProcess, config_text, pause

NODE_TIMEOUT_S = 4.0
HEARTBEAT_S = 1.0
SEGMENT_S = 0.3
MODEMS = 4                       # each node's emulated modems (the harness's default)
# the nodes' sms.unknown_wait, as the harness writes their configuration
UNKNOWN_WAIT_S = tomllib.loads(config_text(Path("unused"), "sqlite://"))["sms"]["unknown_wait"]
# Every team's receipt ladder: a reminder due at once (so every step is in play during the
# fan-out), a supervisor alert far beyond the test.
LADDER = {"receipt_ladder": [{"minutes": 0, "action": "sms_again"}, {"minutes": 60, "action": "supervisor"}]}


@pytest.fixture
def pg_url():
    """Several nodes share PostgreSQL only (SQLite is one process: test_two_processes_on_one_sqlite_file)."""
    from tests.conftest import POSTGRES_OFF, _postgres_schema_url
    if POSTGRES_OFF:
        pytest.skip("YIHU_TEST_POSTGRES=off: several nodes need PostgreSQL")
    url, drop = _postgres_schema_url()
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def cluster(tmp_path, pg_url):
    prepare(pg_url)
    pbx, nodes = start_cluster(tmp_path, pg_url, node_timeout_s=NODE_TIMEOUT_S, heartbeat_s=HEARTBEAT_S,
                               segment_seconds=SEGMENT_S, escalation=LADDER)
    yield pbx, nodes
    for n in nodes:
        n.stop_quietly()
    pbx.stop()


def escalation_config():
    from gateway.escalation.config import EscalationConfig, LadderStep
    return EscalationConfig(receipt_ladder=[LadderStep(**s) for s in LADDER["receipt_ladder"]])


def segments_sent_by(node, nodes) -> int:
    return sum(1 for e in network_sms(nodes) if e["node"] == node.name)


def finish_and_audit(pbx, nodes, url) -> dict:
    left = wait_until_final(url)
    assert not any(left.values()), f"not final: {left}\n" + "\n".join(n.log()[-2000:] for n in nodes)
    pause(2.0)                   # the hotline call's last events (it talks 1 s)
    for n in nodes:
        if n.proc is not None and n.proc.poll() is None:
            assert n.terminate() == 0, n.log()[-3000:]
    return audit(url, nodes, pbx)


def run_kill(pbx, nodes, url, kill_after_segments: int) -> dict:
    a, b = nodes
    a.start()
    b.start()
    pause(2 * HEARTBEAT_S)       # each node has tried the AMI-events lease: exactly one follows the PBX
    pbx.hotline_call()
    commit_order(url, 0, escalation=escalation_config())
    assert wait_for(lambda: segments_sent_by(b, nodes) >= kill_after_segments, 30.0), \
        "node-b sent nothing of the fan-out:\n" + b.log()[-3000:]
    b.kill()
    killed_at = time.time()
    owned = open_messages_of(url, b.name)
    report = finish_and_audit(pbx, nodes, url)
    report["takeover"] = takeover_seconds(nodes, b.name, killed_at, owned)
    report["takeover"]["claimed_s"] = claimed_after(a, b.name, killed_at)     # node-a took node-b's messages
    return report


@pytest.mark.timeout(240)
def test_node_killed_during_the_fan_out_the_survivor_finishes_its_work_once(cluster, pg_url):
    pbx, nodes = cluster
    report = run_kill(pbx, nodes, pg_url, kill_after_segments=6)
    assert_exactly_once(report, pg_url)
    t = report["takeover"]
    assert t["owned_by_dead"] > 0, "node-b owned no unfinished message when it was killed"
    assert t["messages_finished_by_survivor"] > 0, t
    # node-b's heartbeat is node_timeout_s old at most node_timeout_s after the kill, and node-a
    # looks at that moment (SLACK: a claim's round trip and process scheduling on a loaded 2-core
    # CI machine).
    SLACK = 0.7
    assert t["claimed_s"] is not None and t["claimed_s"] <= NODE_TIMEOUT_S + SLACK, t
    # Then the parts node-b never handed to a modem go at node-a's first free modem; a part in
    # node-b's modem when it died follows the unknown-outcome policy (resend after
    # sms.unknown_wait); the rest as fast as node-a's 4 modems carry it, a segment time a round.
    rounds = -(-t["segments_by_survivor"] // MODEMS)
    assert t["first_s"] <= NODE_TIMEOUT_S + UNKNOWN_WAIT_S + SEGMENT_S + SLACK, t
    assert t["last_s"] <= NODE_TIMEOUT_S + UNKNOWN_WAIT_S + (rounds + 1) * SEGMENT_S + SLACK, t


@pytest.mark.timeout(240)
def test_node_restarted_during_the_fan_out_sends_nothing_twice(tmp_path, pg_url):
    prepare(pg_url)
    seg = 0.5                    # a longer fan-out (about 15 s), to restart node-b twice in it
    pbx, nodes = start_cluster(tmp_path, pg_url, node_timeout_s=NODE_TIMEOUT_S, heartbeat_s=HEARTBEAT_S,
                               segment_seconds=seg, escalation=LADDER)
    a, b = nodes
    try:
        a.start()
        b.start()
        commit_order(pg_url, 0, escalation=escalation_config())
        assert wait_for(lambda: segments_sent_by(b, nodes) >= 4, 30.0), b.log()[-3000:]
        assert b.terminate() == 0, b.log()[-3000:]
        b.start()                                  # its row says stopped: the name is free at once
        pause(2 * HEARTBEAT_S)
        pbx.hotline_call()
        before = segments_sent_by(b, nodes)
        assert wait_for(lambda: segments_sent_by(b, nodes) >= before + 4, 30.0), b.log()[-3000:]
        b.kill()
        pause(NODE_TIMEOUT_S + 0.5)                # until its heartbeat is stale: the name is free
        b.start()
        report = finish_and_audit(pbx, nodes, pg_url)
    finally:
        for n in nodes:
            n.stop_quietly()
        pbx.stop()
    assert_exactly_once(report, pg_url)


@pytest.mark.timeout(120)
def test_a_second_process_with_a_live_nodes_name_is_refused(tmp_path, pg_url):
    prepare(pg_url)
    pbx, (a,) = start_cluster(tmp_path, pg_url, names=("node-a",), node_timeout_s=NODE_TIMEOUT_S,
                              heartbeat_s=HEARTBEAT_S)
    twin = Node(tmp_path / "twin", pg_url, "node-a", pbx, free_port(), node_timeout_s=NODE_TIMEOUT_S,
                heartbeat_s=HEARTBEAT_S)
    try:
        a.start()
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(twin.config)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
        refusal = [line for line in out.stderr.splitlines() if line.startswith("yihu:")]
        assert len(refusal) == 1 and "node-a" in refusal[0], out.stderr[-2000:]
        assert a.proc.poll() is None, "the live node died of its twin:\n" + a.log()[-2000:]
    finally:
        a.stop_quietly()
        pbx.stop()


@pytest.mark.timeout(120)
def test_two_processes_on_one_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'one.sqlite'}"
    prepare(url)
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    first = GatewayProcess(tmp_path / "first", url, embedded={"ami_port": 0})
    second = GatewayProcess(tmp_path / "second", url, embedded={"ami_port": 0})
    try:
        first.start()
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(second.config)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
        refusal = [line for line in out.stderr.splitlines() if line.startswith("yihu:")]
        assert len(refusal) == 1 and "one.sqlite" in refusal[0], out.stderr[-2000:]
        assert first.proc.poll() is None
    finally:
        first.stop_quietly()
        second.stop_quietly()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("trial", range(5))
def test_node_killed_at_a_random_moment_of_the_fan_out(cluster, pg_url, trial):
    seed = random.SystemRandom().randrange(1 << 30)
    print(f"seed {seed}")
    report = run_kill(*cluster, pg_url, kill_after_segments=random.Random(seed).randrange(1, 60))
    assert_exactly_once(report, pg_url)
    assert report["takeover"]["last_s"] is None or report["takeover"]["last_s"] <= NODE_TIMEOUT_S + SEGMENT_S
