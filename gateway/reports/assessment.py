"""The half-year assessment: per team, how fast it answered, assembled, arrived and reported,
how often on time against each deadline, how often silent and chased.  Drill orders are scored
apart from real ones (gateway.reports.timings.is_drill_order decides which is which)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gateway.reports.stats import median, p90, rate
from gateway.reports.timings import STEPS, TeamTiming, timings_tx

CATEGORIES = ("real", "drill")


@dataclass
class TeamScore:
    team_code: str
    team_name: str
    team_kind: str
    category: str                        # real / drill
    orders: int = 0
    median_minutes: dict = field(default_factory=dict)     # step -> median minutes after the order
    p90_minutes: dict = field(default_factory=dict)
    on_time_rate: dict = field(default_factory=dict)        # step with a deadline -> share on time
    judged: dict = field(default_factory=dict)              # step -> how many were judged
    silences: int = 0
    escalations: int = 0


@dataclass
class Assessment:
    start: date
    end: date                            # inclusive, local days
    time_zone: str
    scores: list                         # TeamScore, by category then team code

    def as_dict(self) -> dict:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "time_zone": self.time_zone,
                "teams": [asdict(s) for s in self.scores]}


def local_range(start: date, end: date, time_zone: str) -> tuple[datetime, datetime]:
    """[start 00:00, the day after end 00:00) in the center's time zone."""
    z = ZoneInfo(time_zone)
    return datetime.combine(start, time(0), z), datetime.combine(end + timedelta(days=1), time(0), z)


def score(timings: list[TeamTiming]) -> list[TeamScore]:
    groups: dict[tuple, list[TeamTiming]] = {}
    for t in timings:
        groups.setdefault(("drill" if t.drill else "real", t.team_code), []).append(t)
    out = []
    for (category, code), ts in sorted(groups.items(), key=lambda kv: (CATEGORIES.index(kv[0][0]), kv[0][1])):
        s = TeamScore(code, ts[0].team_name, ts[0].team_kind, category, orders=len(ts))
        for step in STEPS:
            s.median_minutes[step] = median(t.minutes[step] for t in ts)
            s.p90_minutes[step] = p90(t.minutes[step] for t in ts)
            flags = [t.on_time[step] for t in ts if step in t.on_time]
            if flags:
                s.on_time_rate[step] = rate(flags)
                s.judged[step] = sum(1 for f in flags if f is not None)
        s.silences = sum(1 for t in ts if t.silent)
        s.escalations = sum(t.escalations for t in ts)
        out.append(s)
    return out


def assessment_tx(conn, cfg, start: date, end: date, time_zone: str, now: datetime) -> Assessment:
    lo, hi = local_range(start, end, time_zone)
    return Assessment(start, end, time_zone, score(timings_tx(conn, cfg, lo, hi, now=now)))
