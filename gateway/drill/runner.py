"""Plays a drill plan on a running embedded gateway: the order, the commanders' answers (SMS into
an emulated modem, keypad on the order call and on the feedback line), the citizens' calls
(through the emulated PBX), a progress line, and the report at the end or when interrupted.

Every delay is on the gateway's own clock (a ScaledClock under --speed), never a sleep."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from twisted.internet import defer, task
from twisted.logger import Logger

from gateway.ami.emulator.pbx import Phone
from gateway.drill import report as drill_report
from gateway.drill.people import KEYPAD, Act, Person, Plan
from gateway.orders.cli import close_order_tx
from gateway.orders.directory_queries import first_phone, team_commanders, teams_by_target
from gateway.orders.order import OrderRequest, Target
from gateway.orders.summary import load_summary_tx
from gateway.orders.team_state import STATE_WORD

log = Logger()

DRILL_TEXT = "【演练】白塔镇山体滑坡，请立即集结赶赴现场，到达后回复“编号 到达”，处置完毕回复报告。"


def pairs_tx(conn, how: str, values: tuple) -> list[tuple[Person, Person]]:
    """(commander, deputy) of each team of the target, with their first phones."""
    found = teams_by_target(conn, how, values)
    contacts = team_commanders(conn, [t.id for t in found])
    out = []
    for t in found:
        c, d = first_phone(contacts[t.id], "commander"), first_phone(contacts[t.id], "deputy")
        if c is None or d is None:
            raise LookupError(f"team {t.code} has no commander or deputy with a phone")
        out.append((Person(t.code, t.name, "commander", c.name, c.phone),
                    Person(t.code, t.name, "deputy", d.name, d.phone)))
    return out


@dataclass
class Played:
    at: float            # simulated seconds after the order
    act: Act


class DrillRun:
    def __init__(self, gw, clock, plan: Plan, target: Target, out_dir: Path, esc_cfg, time_zone: str,
                 progress=print):
        self.gw, self.clock, self.plan, self.target = gw, clock, plan, target
        self.out_dir, self.cfg, self.time_zone, self.progress = out_dir, esc_cfg, time_zone, progress
        self.code: str | None = None
        self.t0 = 0.0
        self.played: list[Played] = []
        self.report = None
        self.done = defer.Deferred()
        self._calls = []
        self._ticker = None
        self._finishing = None

    # --- start ---------------------------------------------------------------------------------
    def phones(self) -> None:
        """What each called phone does: a keypad team's commander answers the order call and
        presses 1 after the drawn ring; everyone else lets it ring (they answer by SMS, or not)."""
        for team in self.plan.teams:
            for person in (team.commander, team.deputy):
                self.gw.pbx.add_phone(person.phone, Phone.unanswered())
            if team.behaviour == KEYPAD:
                act = next(a for a in team.acts if a.kind == "keypad_call")
                self.gw.pbx.add_phone(team.commander.phone, Phone.presses("1", ring=act.ring,
                                                                         after=act.at - act.ring))

    @defer.inlineCallbacks
    def start(self):
        self.phones()
        req = OrderRequest(incident_ref=f"DRILL-{self.plan.seed}", kind="rescue", text=DRILL_TEXT,
                           target=self.target, rule="same_township", voice=True, created_by="drill")
        created = yield self.gw.orders.send(req)
        self.code, self.t0 = created.code, self.clock.seconds()
        for act in self.plan.acts():
            if act.kind != "keypad_call":          # the phone itself presses on the order call
                self._calls.append(self.clock.callLater(act.at, self._play, act))
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = self.clock
        self._ticker.start(60, now=True)
        self._calls.append(self.clock.callLater(self.plan.minutes * 60, self.finish))
        return self.code

    # --- the simulated people ------------------------------------------------------------------
    def _play(self, act: Act) -> None:
        self.played.append(Played(self.clock.seconds() - self.t0, act))
        if act.kind == "sms":
            modems = self.gw.emulated_modems.modems
            modems[int(act.phone[-2:]) % len(modems)].receive_sms(act.phone, act.message(self.code))
        elif act.kind == "keypad_line":
            # The person answers what the line asks: the order's code first only when their team
            # has several open orders (with one, the line goes straight to the menu).
            d = defer.maybeDeferred(self.gw.feedback.open_orders_for, act.phone)
            d.addCallback(lambda codes: self.gw.pbx.feedback_call(
                act.phone, ([] if len(codes or []) == 1 else [f"{self.code}#"]) + [act.text], after=1.0))
            d.addErrback(lambda f: log.failure("drill: feedback-line call from {phone} not placed", f,
                                               phone=act.phone))
        elif act.kind == "citizen":
            self.gw.pbx.hotline_call(act.text, act.phone, outcome=act.outcome, queue_seconds=act.queue_seconds,
                                     talk_seconds=act.talk_seconds)

    @defer.inlineCallbacks
    def _tick(self):
        s = yield self.gw.database.run(load_summary_tx, self.code, self.cfg)
        if s is None:
            return
        counts: dict[str, int] = {}
        for t in s.teams:
            counts[t.state] = counts.get(t.state, 0) + 1
        minutes = (self.clock.seconds() - self.t0) / 60
        chased = sum(len(t.steps) for t in s.teams)
        calls = sum(1 for p in self.played if p.act.kind == "citizen")
        self.progress(f"演练 {self.code}  {minutes:4.0f}/{self.plan.minutes:g} 分  "
                      + " ".join(f"{STATE_WORD.get(k, k)}{n}" for k, n in sorted(counts.items()))
                      + f"  催办{chased}  市民来电{calls}")

    # --- the end -------------------------------------------------------------------------------
    def finish(self, interrupted: bool = False):
        """Write the report (once), whether the drill ran out or was interrupted."""
        if self._finishing is None:
            self._finishing = self._finish(interrupted)
        return self._finishing

    @defer.inlineCallbacks
    def _finish(self, interrupted: bool):
        for c in self._calls:
            if c.active():
                c.cancel()
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        if self.code is None:
            self.done.callback(None)
            return None
        started = datetime.fromtimestamp(self.t0, timezone.utc)
        ended = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        planned = {t.team_code: t.behaviour for t in self.plan.teams}
        citizens = sum(1 for p in self.played if p.act.kind == "citizen")
        r = yield self.gw.database.run(drill_report.drill_report_tx, self.cfg, self.code, started, ended,
                                       self.time_zone, planned, citizens, interrupted)
        # The exercise is over: its order closes (escalation stops; it leaves the wall and stops
        # making the teams' bare-digit replies ambiguous).
        yield self.gw.database.run(close_order_tx, self.code, "drill", ended)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stem = self.out_dir / f"drill-{self.code}-{started:%Y%m%dT%H%M}"
        stem.with_suffix(".csv").write_text(drill_report.csv_text(r), "utf-8")
        stem.with_suffix(".html").write_text(drill_report.html(r, self.cfg), "utf-8")
        self.report = r
        self.files = (stem.with_suffix(".html"), stem.with_suffix(".csv"))
        self.done.callback(r)
        return r


def drill_config(cfg, speed: float):
    """The configuration a drill runs with at `speed`: the center's rules unchanged; only the
    transport watchdogs (AMI, modem and FastAGI answers) and the node's heartbeat, which guard against
    dead peers in real seconds, are stretched by the speed so that a loaded machine does not look like a dead peer.
    No speech synthesis (the emulated phones do not listen)."""
    from dataclasses import replace
    ami = replace(cfg.ami, action_timeout_s=cfg.ami.action_timeout_s * speed,
                  ping_interval_s=cfg.ami.ping_interval_s * speed, ping_timeout_s=cfg.ami.ping_timeout_s * speed)
    sms = replace(cfg.sms, command_timeout=cfg.sms.command_timeout * speed, prompt_timeout=cfg.sms.prompt_timeout * speed,
                  submit_timeout=cfg.sms.submit_timeout * speed)
    # The node's heartbeat and leases too: in real seconds, not 20 transactions a second at speed 60.
    cluster = replace(cfg.cluster, node_timeout_s=cfg.cluster.node_timeout_s * speed,
                      heartbeat_s=cfg.cluster.heartbeat_s * speed)
    ivr = replace(cfg.ivr, speech=False, env_timeout_s=cfg.ivr.env_timeout_s * speed,
                  command_timeout_s=cfg.ivr.command_timeout_s * speed)
    return replace(cfg, sections={**cfg.sections, "ami": ami, "sms": sms, "ivr": ivr,
                                  "cluster": cluster})
