"""Escalation rules as configuration (TOML section [escalation]); defaults are the center's rules.

Defaults, from the center's response-time rules (DIGEST: 快速反应机制, 双反馈):
- same township / city: arrive within 20 min by day, 30 by night;
- leaving the city: assembled within 15 min by day, 25 by night;
- the result of handling reported within 24 h;
- receipt ladder: 3 min SMS again to commander and deputy, 6 call the commander, 9 call the
  deputy, 12 the duty supervisor (one SMS and one call naming every silent team) and an event.

Night is 22:00-06:00 local time by default: the statutory meaning of 夜间 in PRC law (the noise
law's 22:00-06:00), and the stricter of the usual choices: a shorter night means the 20-minute
day limit applies longer.  A center that counts night from 20:00 sets night_starts = "20:00".
Which limit applies is decided by the local time at which the order was sent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class LadderStep:
    """One rung: `minutes` after the stage's deadline, do `action`."""
    minutes: float = 0.0
    action: str = "sms_again"     # sms_again / call_commander / call_deputy / supervisor

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"ladder action {self.action!r}: one of {', '.join(ACTIONS)}")
        if self.minutes < 0:
            raise ValueError(f"ladder step {self.action}: minutes must not be negative")


ACTIONS = ("sms_again", "call_commander", "call_deputy", "supervisor")


def _receipt_ladder() -> list[LadderStep]:
    return [LadderStep(3, "sms_again"), LadderStep(6, "call_commander"),
            LadderStep(9, "call_deputy"), LadderStep(12, "supervisor")]


def _situation_ladder() -> list[LadderStep]:
    # A missed situation report (现场动态) of a major order: SMS, then the commander, then the
    # duty supervisor, 5 minutes apart.
    return [LadderStep(0, "sms_again"), LadderStep(5, "call_commander"), LadderStep(10, "supervisor")]


def _deadline_ladder() -> list[LadderStep]:
    # "Arrival and completion deadlines escalate the same way": the same rungs, 3 min apart,
    # starting when the deadline passes.
    return [LadderStep(0, "sms_again"), LadderStep(3, "call_commander"),
            LadderStep(6, "call_deputy"), LadderStep(9, "supervisor")]


@dataclass(frozen=True)
class EscalationConfig:
    timezone: str = "Asia/Shanghai"
    day_starts: str = "06:00"            # local HH:MM
    night_starts: str = "22:00"
    arrive_day_minutes: int = 20         # same_township rule
    arrive_night_minutes: int = 30
    assemble_day_minutes: int = 15       # leaving_city rule
    assemble_night_minutes: int = 25
    # The seed gives no arrival limit for a team that left the city; 0 = no arrival chase
    # (its arrival is still recorded and its 24-hour report still chased).
    leaving_city_arrive_minutes: int = 0
    report_hours: float = 24.0           # the result of handling, with follow-up, within 24 h
    receipt_ladder: list[LadderStep] = field(default_factory=_receipt_ladder)
    arrival_ladder: list[LadderStep] = field(default_factory=_deadline_ladder)
    report_ladder: list[LadderStep] = field(default_factory=_deadline_ladder)
    situation_ladder: list[LadderStep] = field(default_factory=_situation_ladder)   # a missed report of a major order
    major_report_minutes: float = 30.0   # set from orders.major_report_minutes
    late_after_seconds: float = 5.0      # a step fired later than this after its due time is "late"
    auditor_seconds: float = 60.0        # how often the auditor looks for missed steps
    refresh_seconds: float = 2.0         # how often steps committed by other processes (CLI) are picked up
    fanout_retry_seconds: float = 30.0   # deliveries not yet handed to the SMS outbox are retried
    stuck_after_seconds: float = 300.0   # a step claimed but never finished is re-fired after this

    def __post_init__(self):
        """Refuse a configuration that would silently chase nobody or at the wrong time."""
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"timezone {self.timezone!r} unknown") from e
        for name in ("day_starts", "night_starts"):
            v = getattr(self, name)
            h, _, m = v.partition(":")
            if not (h.isdigit() and m.isdigit() and 0 <= int(h) < 24 and 0 <= int(m) < 60):
                raise ValueError(f"{name} {v!r}: expected HH:MM")
        if self.day_starts == self.night_starts:
            raise ValueError("day_starts and night_starts must differ")
        for name in ("arrive_day_minutes", "arrive_night_minutes", "assemble_day_minutes",
                     "assemble_night_minutes", "report_hours", "refresh_seconds", "auditor_seconds",
                     "major_report_minutes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("receipt_ladder", "arrival_ladder", "report_ladder", "situation_ladder"):
            ladder = [LadderStep(**x) if isinstance(x, dict) else x for x in getattr(self, name)]
            if not ladder:
                raise ValueError(f"{name} is empty: silence would never be chased")
            if [x.minutes for x in ladder] != sorted(x.minutes for x in ladder):
                raise ValueError(f"{name}: steps must be in time order")
            if ladder[-1].action != "supervisor":
                raise ValueError(f"{name}: the last step must reach the duty supervisor")
