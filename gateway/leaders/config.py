"""Who among the leaders hears what (TOML section [leaders]).

The seed: the center reports incidents and their handling to the county's leaders in time
(及时向县相关领导报告).  A major order (重大突出事件) is reported at each milestone and in a
digest of the teams' situation reports; ordinary orders go into one daily digest.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("commander_in_chief", "deputy_commander", "office_director", "county_leader")
ROLE_WORD = {"commander_in_chief": "总指挥", "deputy_commander": "副总指挥", "office_director": "办公室主任",
             "county_leader": "县领导"}
# What a major order reports: created, first team arrived, all arrived, a missed deadline, finished.
MAJOR_EVENTS = ("created", "first_arrived", "all_arrived", "missed", "finished", "digest")


@dataclass(frozen=True)
class LeadersSection:
    major_roles: list[str] = field(default_factory=lambda: list(ROLES))   # who hears of a major order
    major_events: list[str] = field(default_factory=lambda: list(MAJOR_EVENTS))   # which of its news
    digest_minutes: float = 60.0           # a major order: digest of situation reports this often
    daily_roles: list[str] = field(default_factory=lambda: ["office_director"])   # who gets the daily digest
    daily_digest_at: str = "08:00"         # local HH:MM: ordinary orders of the past day, one SMS
    sweep_seconds: float = 5.0             # how often the notifier looks for news to send

    def __post_init__(self):
        for name in ("major_roles", "daily_roles"):
            bad = [r for r in getattr(self, name) if r not in ROLES]
            if bad:
                raise ValueError(f"{name}: unknown role(s) {', '.join(bad)} (roles: {', '.join(ROLES)})")
        bad = [e for e in self.major_events if e not in MAJOR_EVENTS]
        if bad:
            raise ValueError(f"major_events: unknown event(s) {', '.join(bad)} (events: {', '.join(MAJOR_EVENTS)})")
        h, _, m = self.daily_digest_at.partition(":")
        if not (h.isdigit() and m.isdigit() and 0 <= int(h) < 24 and 0 <= int(m) < 60):
            raise ValueError(f"daily_digest_at {self.daily_digest_at!r}: expected HH:MM")
        if self.digest_minutes <= 0 or self.sweep_seconds <= 0:
            raise ValueError("digest_minutes and sweep_seconds must be above 0")
