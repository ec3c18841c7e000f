"""Where a team stands against the center's rules right now: the deadline it is measured against,
how long since the order, and whether it is silent or late.  Pure functions of an order summary
and "now"; the wall board, the drill report and the assessment share them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.escalation.config import EscalationConfig
from gateway.escalation.deadlines import ARRIVAL, ASSEMBLY, REPORT

# A team that said nothing (or could not be reached) has not answered at all.
UNANSWERED = ("sent", "delivered", "unreachable")
# The stage each answer satisfies, by the status words of order_teams' *_at columns.
_DONE_BY = {ASSEMBLY: ("assembled", "arrived", "finished"), ARRIVAL: ("arrived", "finished")}


@dataclass(frozen=True)
class Standing:
    state: str
    minutes: int                     # since the order was sent
    stage: str | None                # the stage measured now: assembly / arrival / report; None: all done
    deadline: datetime | None
    silent: bool                     # no answer at all after the first receipt rung
    late: bool                       # the measured stage's deadline has passed

    @property
    def needs_attention(self) -> bool:
        return self.silent or self.late or self.state == "declined"


def measured_stage(took: dict, has_report: bool, deadlines: dict) -> str | None:
    """The first stage of the order's rule the team has not yet satisfied."""
    for stage in (ASSEMBLY, ARRIVAL):
        if stage in deadlines and not any(s in took for s in _DONE_BY[stage]):
            return stage
    if not ("finished" in took and has_report):
        return REPORT
    return None


def standing(state: str, took: dict, has_report: bool, sent_at: datetime, deadlines: dict,
             now: datetime, cfg: EscalationConfig) -> Standing:
    minutes = max(0, int((now - sent_at).total_seconds() // 60))
    first_rung = cfg.receipt_ladder[0].minutes if cfg.receipt_ladder else 0
    silent = state in UNANSWERED and minutes >= first_rung
    if state == "declined":
        return Standing(state, minutes, None, None, False, False)
    stage = measured_stage(took, has_report, deadlines)
    deadline = deadlines.get(stage) if stage else None
    return Standing(state, minutes, stage, deadline, silent, bool(deadline and now > deadline))


def team_standing(line, summary, now: datetime, cfg: EscalationConfig) -> Standing:
    """`line` a TeamLine of `summary` (gateway.orders.summary)."""
    return standing(line.state, line.took, bool(line.report), summary.sent_at, summary.deadlines, now, cfg)
