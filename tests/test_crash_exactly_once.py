"""Exactly once across crashes: the REAL gateway process on its embedded default, killed at random.

Every third trial commits an order to all 40 teams (80 phones, a 2-segment Chinese SMS, with
voice) and kills the gateway (-9) at a random moment of its fan-out (within the first second, or
later); the two trials after it kill the restarted gateway again at random while it resumes that
fan-out from the rows.  Each trial is a kill and a restart.  At the end the gateway finishes what it owes and is stopped with SIGTERM.  Then,
counted from the emulated network's own file (DATA_DIR/network.jsonl) by this test's code:
  - 0 phones without the whole message of every order,
  - 0 duplicate segments that the database does not record as "outcome unknown",
  - 0 calls placed twice unless the first attempt is recorded unknown, 0 calls not on record,
  - 0 deliveries, messages or call attempts left in a non-final state.
The same with a 30 s database outage during the fan-out, and with SIGTERM instead of kill -9.
A fixed seed runs in CI; `-m slow` runs more, longer trials.
"""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, select, text

from tests._cluster import prepare       # migrate, then the roster of the 40 teams
from tests._gateway_process import ORDER_TEXT, GatewayProcess, OutageProxy, SqliteOutage, pause

OUTAGE_SECONDS = 30.0

NON_FINAL = {"deliveries": ("queued", "requested", "handing", "calling"),
             "sms_messages": ("queued", "sending"),
             "call_attempts": ("due", "placing", "ringing")}


# --- the database side, through the test's own queries ----------------------------------------
def commit_order(url: str, n: int) -> str:
    """What `yihu order send --target all --voice` commits; the running gateway sends it."""
    from gateway.escalation.config import EscalationConfig
    from gateway.orders.order import OrderRequest, Target
    from gateway.orders.store import create_order_tx
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            req = OrderRequest(f"KILL-{n}", "rescue", ORDER_TEXT, Target("all"), "same_township", voice=True,
                               created_by="cli:test")
            created = create_order_tx(conn, req, datetime.now(timezone.utc), EscalationConfig(), random.Random(n))
        assert len(created.team_ids) == 40
        return created.code
    finally:
        engine.dispose()


def rows(conn, sql: str) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(text(sql))]


def not_final(conn) -> dict:
    out = {}
    for table, states in NON_FINAL.items():
        q = f"SELECT count(*) FROM {table} WHERE state IN ({', '.join(repr(s) for s in states)})"
        out[table] = conn.execute(text(q)).scalar()
    return out


def wait_until_final(url: str, stalled_after: float = 45.0, limit: float = 400.0) -> dict:
    """Until nothing is left in a non-final state; fails when nothing moved for `stalled_after` s
    (a backlog on a loaded CI machine drains slowly, but it drains)."""
    engine = create_engine(url)
    try:
        start = last_move = time.monotonic()
        before = None
        while True:
            with engine.connect() as conn:
                left = not_final(conn)
            now = time.monotonic()
            if not any(left.values()) or now - last_move > stalled_after or now - start > limit:
                return left
            if left != before:
                before, last_move = left, now
            pause(0.3)
    finally:
        engine.dispose()


# --- the count, from the network's file -------------------------------------------------------
def read_network(path) -> tuple[list[dict], list[dict]]:
    sms, calls = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue           # a line cut by the kill
        (sms if r["kind"] == "sms" else calls).append(r)
    return sms, calls


def audit(url: str, journal) -> dict:
    sms, calls = read_network(journal)
    engine = create_engine(url)
    with engine.connect() as conn:
        messages = rows(conn, "SELECT id, phone, text, parts, delivery_id FROM sms_messages WHERE purpose = 'order'")
        segments = rows(conn, "SELECT message_id, seq, outcome_unknown FROM sms_segments")
        sms_deliveries = rows(conn, "SELECT id, state FROM deliveries WHERE channel = 'sms'")
        voice = rows(conn, "SELECT id, state FROM deliveries WHERE channel = 'voice' AND id IN "
                           "(SELECT delivery_id FROM call_attempts WHERE purpose = 'order')")
        attempts = rows(conn, "SELECT id, delivery_id, channel_id, state FROM call_attempts")
        left = not_final(conn)
    engine.dispose()

    unknown_of = {(s["message_id"], s["seq"]): s["outcome_unknown"] for s in segments}
    parts = defaultdict(list)               # (phone, reference, parts) -> entries
    by_phone = defaultdict(list)
    for e in sms:
        parts[(e["phone"], e["reference"], e["parts"])].append(e)
        by_phone[e["phone"]].append(e)
    missing = []
    for m in messages:                      # the phone can show the whole message
        mine = [e for e in parts[(m["phone"], m["id"] % 256, m["parts"])] if e["text"] in m["text"]]
        by_seq = defaultdict(list)
        for e in mine:
            by_seq[e["part"]].append(e["text"])
        whole = (set(by_seq) == set(range(1, m["parts"] + 1))
                 and "".join(by_seq[i][0] for i in range(1, m["parts"] + 1)) == m["text"])
        if not whole:
            missing.append((m["phone"], m["id"], sorted(by_seq)))
    # Copies the phone received of each part of an order's text, whatever message carried them,
    # against one plus the times the database recorded that part's outcome unknown.
    orders_of = defaultdict(list)           # (phone, text) -> messages
    for m in messages:
        orders_of[(m["phone"], m["text"])].append(m)
    unrecorded_dups, dups = [], 0
    for (phone, text_), ms in orders_of.items():
        n = ms[0]["parts"]
        for seq in range(1, n + 1):
            got = sum(1 for e in by_phone[phone] if e["part"] == seq and e["parts"] == n and e["text"] in text_)
            allowed = 1 + sum(unknown_of.get((m["id"], seq), 0) for m in ms)
            dups += max(0, got - 1)
            if got > allowed:
                unrecorded_dups.append((phone, [m["id"] for m in ms], seq, got))

    placed = Counter(c["channel_id"] for c in calls)
    attempt_of = {a["channel_id"]: a for a in attempts if a["channel_id"]}
    off_record = [cid for cid in placed if cid not in attempt_of]
    per_delivery = defaultdict(lambda: [0, 0])        # delivery -> [calls placed, attempts unknown]
    for a in attempts:
        if a["delivery_id"] is None:
            continue
        per_delivery[a["delivery_id"]][0] += placed.get(a["channel_id"], 0)
        per_delivery[a["delivery_id"]][1] += a["state"] == "unknown"
    twice = [d for d, (n, unknown) in per_delivery.items() if n > 1 + unknown]
    return {
        "orders_sms": len(messages), "segments_per_message": sorted({m["parts"] for m in messages}), "phones_without_whole_message": len(missing), "missing": missing[:5],
        "sms_deliveries_without_message": len(sms_deliveries) - len(messages),
        "sms_deliveries_not_sent": sum(1 for d in sms_deliveries if d["state"] != "sent"),
        "duplicate_segments": dups, "duplicates_not_recorded_unknown": len(unrecorded_dups),
        "unrecorded": unrecorded_dups[:5],
        "calls_placed": sum(placed.values()), "channel_ids_placed_twice": sum(1 for n in placed.values() if n > 1),
        "calls_not_on_record": len(off_record), "calls_twice_not_recorded_unknown": len(twice),
        "voice_deliveries": len(voice),
        "voice_answered": sum(1 for d in voice if d["state"] == "answered"),
        "attempts_unknown": sum(1 for a in attempts if a["state"] == "unknown"),
        "non_final": left,
    }


def assert_exactly_once(report: dict, orders: int) -> None:
    print(json.dumps(report, ensure_ascii=False))
    assert report["orders_sms"] == orders * 80 and report["segments_per_message"] == [2]
    assert report["voice_deliveries"] == orders * 80
    assert report["phones_without_whole_message"] == 0, report["missing"]
    assert report["sms_deliveries_without_message"] == 0 and report["sms_deliveries_not_sent"] == 0
    assert report["duplicates_not_recorded_unknown"] == 0, report["unrecorded"]
    assert report["channel_ids_placed_twice"] == 0 and report["calls_not_on_record"] == 0
    assert report["calls_twice_not_recorded_unknown"] == 0
    assert not any(report["non_final"].values()), report["non_final"]


# --- the trials ---------------------------------------------------------------------------------
def kill_moment(rng: random.Random, trial: int) -> float:
    """Half the trials in the first second of the fan-out, the rest while it is well under way."""
    return rng.uniform(0.0, 1.0) if trial % 2 == 0 else rng.uniform(1.0, 3.5)


KILLS_PER_ORDER = 3       # each order's fan-out is interrupted three times, at random moments


def run_trials(gp: GatewayProcess, url: str, trials: int, seed: int, how: str = "kill") -> int:
    """Returns the number of orders sent."""
    rng = random.Random(seed)
    gp.start()
    orders = 0
    for n in range(trials):
        if n % KILLS_PER_ORDER == 0:
            commit_order(url, orders)
            orders += 1
            pause(kill_moment(rng, n))              # the first second of this order's fan-out, or later
        else:
            pause(rng.uniform(0.0, 2.0))            # right after the restart: resuming from the rows
        if how == "kill":
            gp.kill()
        else:
            rc = gp.terminate()
            assert rc == 0, gp.log()[-3000:]
        gp.start()
    left = wait_until_final(url)
    assert not any(left.values()), f"not final after the last restart: {left}\n{gp.log()[-3000:]}"
    assert gp.terminate() == 0, gp.log()[-3000:]
    return orders


@pytest.fixture
def gateway(tmp_path, db_url):
    prepare(db_url)
    gp = GatewayProcess(tmp_path, db_url)
    yield gp
    gp.stop_quietly()


@pytest.mark.timeout(600)
def test_kill_9_at_random_moments_sends_every_order_exactly_once(gateway, db_url):
    orders = run_trials(gateway, db_url, trials=30, seed=12)
    assert_exactly_once(audit(db_url, gateway.journal), orders=orders)


@pytest.mark.timeout(600)
def test_sigterm_at_random_moments_sends_every_order_exactly_once(gateway, db_url):
    orders = run_trials(gateway, db_url, trials=6, seed=13, how="term")
    report = audit(db_url, gateway.journal)
    assert_exactly_once(report, orders=orders)
    # SIGTERM waits for the segments in flight to be answered: no SMS is left in doubt by a clean
    # stop (a call in progress is: its outcome is reconciled at the next start).
    assert report["duplicate_segments"] == 0


@pytest.mark.timeout(600)
def test_database_outage_of_30_s_during_the_fan_out_loses_and_repeats_nothing(tmp_path, db_url):
    from sqlalchemy.engine import make_url
    prepare(db_url)
    u = make_url(db_url)
    if u.get_backend_name() == "sqlite":
        outage, gateway_url = SqliteOutage(u.database), db_url       # another process holds the write lock
    else:                                                              # a proxy we cut, on loopback port 0
        outage = OutageProxy(u.host or "127.0.0.1", u.port or 5432)
        gateway_url = u.set(port=outage.port).render_as_string(hide_password=False)
    gp = GatewayProcess(tmp_path, gateway_url, gateway={"db_write_alarm_s": 10.0})
    try:
        gp.start()
        commit_order(db_url, 0)
        pause(0.7)                                      # the fan-out is under way
        outage.outage()
        pause(OUTAGE_SECONDS)
        assert gp.proc.poll() is None, "the gateway died of the outage:\n" + gp.log()[-3000:]
        outage.restore()
        left = wait_until_final(db_url)
        assert not any(left.values()), f"not final after the outage: {left}\n{gp.log()[-3000:]}"
        assert gp.terminate() == 0, gp.log()[-3000:]
        messages = [r["message"] for r in gp.records()]
        if u.get_backend_name() != "sqlite":
            # The alarm went off while writes could not commit, and every one got through afterwards.
            # (SQLite: a write waits for the lock within its busy timeout, 30 s, and commits late.)
            assert any("NOT committed after" in m for m in messages), "no alarm during the outage"
            assert any("committed after" in m and "retries" in m for m in messages)
    finally:
        gp.stop_quietly()
        outage.close()
    assert_exactly_once(audit(db_url, gp.journal), orders=1)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill_9_long_randomised_trials(gateway, db_url):
    seed = random.SystemRandom().randrange(1 << 30)
    print(f"seed {seed}")
    orders = run_trials(gateway, db_url, trials=100, seed=seed)
    assert_exactly_once(audit(db_url, gateway.journal), orders=orders)
