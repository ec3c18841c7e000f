"""A compressed drill end to end: the embedded gateway (emulated modems on ptys, emulated Asterisk,
FastAGI, database) on a clock running 60 times faster; simulated commanders answer by SMS and
keypad, one team stays silent, citizens call the hotlines.  The report, built from the database,
must agree with what the simulated people did: who answered, when, how; the silent team chased
up the whole receipt ladder."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest_twisted
import treq
from sqlalchemy import select
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from gateway.config import load_config
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.drill.clock import ScaledClock
from gateway.drill.people import KEYPAD, SILENT, SMS, plan_drill
from gateway.drill.runner import DrillRun, drill_config, pairs_tx
from gateway.orders.order import Target
from gateway.storage.schema import orders
from gateway.wiring import build_service
from tests.test_embedded_drill import ROSTER, eventually, free_port

SPEED = 60
TEAMS = ("PUB-07", "PUB-08", "PUB-09", "PRO-04", "PRO-05")
SEED = 229           # three SMS teams (two typos among them), one keypad team, one silent; one arrives late
LAG = 2.5            # simulated minutes: 2.5 s real at 60x


@pytest_twisted.inlineCallbacks
def test_compressed_drill_report_agrees_with_the_simulated_people(migrated_url, tmp_path):
    cfg = load_config(None, {
        "gateway": {"database_url": migrated_url, "data_dir": str(tmp_path), "embedded": True},
        "http": {"port": 0},
        "ivr": {"port": free_port()},
        "embedded": {"modems": 2, "ami_port": free_port()},
        # The same deadline by day and by night, so that the plan's late arrivals are late at any hour.
        "escalation": {"arrive_day_minutes": 20, "arrive_night_minutes": 20},
    })
    clock = ScaledClock(reactor, SPEED)
    gw = build_service(drill_config(cfg, SPEED), clock)
    gw.startService()
    try:
        yield gw.database.run(import_roster, read_roster(ROSTER), source="roster", actor="test")
        port = (yield gw.http_service.listening).getHost().port

        @inlineCallbacks
        def healthy():
            body = json.loads((yield (yield treq.get(f"http://127.0.0.1:{port}/health")).content()))
            checks = body["checks"]       # a part still starting reports under its service name
            return checks.get("ami", {}).get("ok") and checks.get("sms", {}).get("ok")
        yield eventually(healthy, "AMI logged in and modems ready")
        pairs = yield gw.database.run(pairs_tx, "teams", TEAMS)
        plan = plan_drill(pairs, SEED, minutes=28, response_minutes=20, silent=1, citizens_per_hour=40)
        assert sorted(t.behaviour for t in plan.teams) == [KEYPAD, SILENT, SMS, SMS, SMS]
        assert sum(1 for t in plan.teams for a in t.acts if a.status is None) == 2          # typos
        assert any(a.role == "deputy" for t in plan.teams for a in t.acts)
        lines = []
        run = DrillRun(gw, clock, plan, Target.parse("teams:" + ",".join(TEAMS)), tmp_path / "reports",
                       cfg.escalation, cfg.gateway.time_zone, progress=lines.append)
        started = reactor.seconds()
        yield run.start()
        report = yield run.done
        took = reactor.seconds() - started
        # The exercise over, its order is closed: off the wall, its escalation stopped.
        state = yield gw.database.run(lambda c: c.execute(select(orders.c.state).where(
            orders.c.code == run.code)).scalar())
        assert state == "closed"
    finally:
        yield gw.stopService()
        gw.database.stop()
    print(f"28 simulated minutes in {took:.1f} s real; {len(lines)} progress lines")
    assert len(lines) >= 25 and run.code in lines[-1]

    timings = {t.team_code: t for t in report.teams}
    assert sorted(timings) == sorted(TEAMS)
    for team in plan.teams:
        t = timings[team.team_code]
        if team.behaviour == SILENT:
            # Nobody answered: no feedback, and the whole receipt ladder fired, in order.
            assert t.silent and t.minutes["received"] is None and t.on_time["arrived"] is False
            receipt = [(s.action, s.state) for s in t.steps if s.stage == "receipt"]
            assert receipt == [("sms_again", "fired"), ("call_commander", "fired"), ("call_deputy", "fired"),
                               ("supervisor", "fired")], t.steps
            fired = [round((s.fired_at - t.sent_at).total_seconds() / 60) for s in t.steps if s.stage == "receipt"]
            assert fired == [3, 6, 9, 12]
            continue
        # Every answer the people gave (typos aside) is recorded once, by whom and how they gave it.
        given = [a for a in sorted(team.acts, key=lambda a: a.at) if a.status is not None]
        assert [(a.status, a.who, "keypad" if a.kind.startswith("keypad") else "sms") for a in given] == \
            [(a.status, a.who.split(" (")[0], a.channel) for a in t.answers], team.team_code
        # When: recorded after the person acted, and within LAG: the gateway's real processing time
        # (serial, FastAGI, database) on a loaded CI machine, magnified 60 times by the clock.
        for act, answer in zip(given, t.answers):
            recorded = (answer.at - t.sent_at).total_seconds() / 60
            assert act.at / 60 - 0.05 <= recorded < act.at / 60 + LAG, (team.team_code, act, recorded)
        arrival = team.first("arrived")
        if arrival is not None:
            assert arrival.at / 60 - 0.05 <= t.minutes["arrived"] < arrival.at / 60 + LAG
            assert t.on_time["arrived"] is (t.minutes["arrived"] <= 20), team.team_code
            if abs(arrival.at / 60 - 20) > LAG:
                assert t.on_time["arrived"] is (arrival.at <= 20 * 60), team.team_code
        assert not t.steps or all(s.stage != "receipt" or s.fired_at < t.answers[0].at for s in t.steps
                                  if s.state == "fired")
    late = [t.team_code for t in plan.teams if t.first("arrived") and t.first("arrived").at > 20 * 60]
    assert len(late) == 1 and all(timings[c].on_time["arrived"] is False for c in late)
    # The hotline figures are the citizens' calls, each ended within the drill.
    assert sum(f["calls"] for f in report.hotline.values()) == report.citizens == len(plan.citizens)
    planned = {o: sum(1 for c in plan.citizens if c.outcome == o) for o in ("answered", "failed")}
    assert sum(f["answered"] for f in report.hotline.values()) == planned["answered"]
    # The files: CSV per team, HTML with the SVG chart.
    html_file, csv_file = run.files
    rows = {r["team_code"]: r for r in csv.DictReader(io.StringIO(csv_file.read_text("utf-8")))}
    assert sorted(rows) == sorted(TEAMS)
    silent_code = next(t.team_code for t in plan.teams if t.behaviour == SILENT)
    assert "电话副指挥" in rows[silent_code]["escalation_steps"] and rows[silent_code]["received_min"] == ""
    page = html_file.read_text("utf-8")
    assert "<svg" in page and "到达时限" in page
