"""Deadlines and ladders: pure functions from (rule, time sent, config) to the planned steps."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from gateway.escalation.config import EscalationConfig, LadderStep

SAME_TOWNSHIP = "same_township"
LEAVING_CITY = "leaving_city"
RULES = (SAME_TOWNSHIP, LEAVING_CITY)

# Stages, in the order a team goes through them.
RECEIPT = "receipt"
ASSEMBLY = "assembly"
ARRIVAL = "arrival"
REPORT = "report"
SITUATION = "situation"       # a major order's situation report, owed every orders.major_report_minutes
STAGE_WORD = {RECEIPT: "接收", ASSEMBLY: "集结", ARRIVAL: "到达", REPORT: "处置结果", SITUATION: "现场动态"}


@dataclass(frozen=True)
class PlannedStep:
    stage: str
    step: int           # 1-based rung number within the stage
    action: str
    due_at: datetime    # aware UTC
    deadline: datetime  # the stage's deadline, for the reason text


def _hhmm(s: str) -> time:
    h, m = s.split(":")
    return time(int(h), int(m))


def is_night(at: datetime, cfg: EscalationConfig) -> bool:
    """Night by the local wall clock; the window may wrap midnight (22:00-06:00)."""
    local = at.astimezone(ZoneInfo(cfg.timezone)).time()
    night, day = _hhmm(cfg.night_starts), _hhmm(cfg.day_starts)
    if night > day:
        return local >= night or local < day
    return night <= local < day


def response_minutes(rule: str, sent_at: datetime, cfg: EscalationConfig) -> int:
    """Minutes allowed to arrive (same township) or to be assembled (leaving the city)."""
    night = is_night(sent_at, cfg)
    if rule == SAME_TOWNSHIP:
        return cfg.arrive_night_minutes if night else cfg.arrive_day_minutes
    if rule == LEAVING_CITY:
        return cfg.assemble_night_minutes if night else cfg.assemble_day_minutes
    raise ValueError(f"unknown response rule {rule!r}")


def stage_deadlines(rule: str, sent_at: datetime, cfg: EscalationConfig) -> dict[str, datetime]:
    limit = timedelta(minutes=response_minutes(rule, sent_at, cfg))
    d = {RECEIPT: sent_at}
    if rule == SAME_TOWNSHIP:
        d[ARRIVAL] = sent_at + limit
    else:
        d[ASSEMBLY] = sent_at + limit
        if cfg.leaving_city_arrive_minutes:
            d[ARRIVAL] = sent_at + timedelta(minutes=cfg.leaving_city_arrive_minutes)
    d[REPORT] = sent_at + timedelta(hours=cfg.report_hours)
    return d


def _ladder(stage: str, cfg: EscalationConfig) -> list[LadderStep]:
    return {RECEIPT: cfg.receipt_ladder, REPORT: cfg.report_ladder,
            SITUATION: cfg.situation_ladder}.get(stage, cfg.arrival_ladder)


def plan_steps(rule: str, sent_at: datetime, cfg: EscalationConfig) -> list[PlannedStep]:
    out = []
    for stage, deadline in stage_deadlines(rule, sent_at, cfg).items():
        for n, rung in enumerate(_ladder(stage, cfg), start=1):
            out.append(PlannedStep(stage, n, rung.action, deadline + timedelta(minutes=rung.minutes), deadline))
    return sorted(out, key=lambda s: s.due_at)


def plan_situation_steps(due: datetime, cfg: EscalationConfig) -> list[PlannedStep]:
    """One cycle of a major order's cadence: the report is due at `due`, its ladder after it."""
    return [PlannedStep(SITUATION, n, rung.action, due + timedelta(minutes=rung.minutes), due)
            for n, rung in enumerate(cfg.situation_ladder, start=1)]


def local_hhmm(at: datetime, cfg: EscalationConfig) -> str:
    return at.astimezone(ZoneInfo(cfg.timezone)).strftime("%H:%M")
