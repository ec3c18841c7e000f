"""One team's state for one order: a small state machine fed by events named after what happened.

States: sent -> delivered -> received -> assembled -> arrived -> finished, plus declined and
unreachable, which any positive answer leaves again.  Progress never goes backwards: "收到"
after "到达" is kept as feedback but the team stays arrived.  SMS and keypad answers are the
same events, so they merge into one state.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from gateway.escalation.deadlines import ARRIVAL, ASSEMBLY, LEAVING_CITY, RECEIPT, REPORT, SITUATION

SENT, DELIVERED, RECEIVED, ASSEMBLED, ARRIVED, FINISHED = \
    "sent", "delivered", "received", "assembled", "arrived", "finished"
DECLINED, UNREACHABLE = "declined", "unreachable"
PROGRESS = [SENT, DELIVERED, RECEIVED, ASSEMBLED, ARRIVED, FINISHED]
RANK = {s: i for i, s in enumerate(PROGRESS)}
STATE_WORD = {SENT: "已发送", DELIVERED: "已送达", RECEIVED: "已收到", ASSEMBLED: "集结完毕",
              ARRIVED: "已到达", FINISHED: "处置完毕", DECLINED: "无法执行", UNREACHABLE: "联系不上",
              "queued": "待发送"}       # shown while the order SMS waits for a modem (summary.QUEUED)


@dataclass(frozen=True)
class TeamOrderState:
    rule: str
    state: str = SENT
    delivered_at: datetime | None = None
    received_at: datetime | None = None
    assembled_at: datetime | None = None
    arrived_at: datetime | None = None
    finished_at: datetime | None = None
    answered_by: int | None = None
    reason: str | None = None       # why declined / unreachable
    report: str | None = None       # the finishing report as written
    form_complete: bool = False     # the formal feedback form has every required field


@dataclass(frozen=True)
class Outcome:
    state: TeamOrderState
    accepted: bool          # False: the event does not apply (assembled under same_township)
    advanced: bool          # the state moved forward
    note: str = ""


def _progress_rank(s: TeamOrderState) -> int:
    return RANK.get(s.state, -1)     # declined / unreachable: any positive answer moves on


def on_answer(s: TeamOrderState, status: str, at: datetime, member_id: int | None,
              report: str = "") -> Outcome:
    """A commander or deputy answered (SMS or keypad) with `status`."""
    if status == DECLINED:
        if s.state == FINISHED:
            return Outcome(s, True, False, "already finished")
        return Outcome(replace(s, state=DECLINED, reason=report or "(no reason given)",
                               answered_by=member_id), True, True)
    if status == ASSEMBLED and s.rule != LEAVING_CITY:
        return Outcome(s, False, False, "assembled applies only to teams leaving the city")
    if status not in RANK:
        raise ValueError(f"unknown status {status!r}")
    stamp = f"{status}_at"
    changes = {}
    if getattr(s, stamp) is None:
        changes[stamp] = at
    if status == FINISHED and report:
        changes["report"] = report      # a later "3 + report" completes the formal feedback
    advanced = RANK[status] > _progress_rank(s)
    if advanced:
        changes.update(state=status, reason=None)
    if advanced or changes:
        changes["answered_by"] = member_id
    note = "" if advanced else f"team already {s.state}"
    return Outcome(replace(s, **changes), True, advanced, note)


def on_delivered(s: TeamOrderState, at: datetime) -> TeamOrderState:
    if s.delivered_at is None:
        s = replace(s, delivered_at=at)
    return replace(s, state=DELIVERED) if s.state in (SENT, UNREACHABLE) else s


def on_unreachable(s: TeamOrderState, reason: str) -> TeamOrderState:
    """Calls to commander and deputy failed: only a team that has said nothing is unreachable."""
    return replace(s, state=UNREACHABLE, reason=reason) if s.state in (SENT, DELIVERED) else s


def satisfied_stages(s: TeamOrderState) -> set[str]:
    """The stages whose escalation must stop: the team has said what that stage waits for."""
    if s.state == DECLINED:
        return {RECEIPT, ASSEMBLY, ARRIVAL, REPORT, SITUATION}   # the dispatcher must act, not the ladder
    done = set()
    if s.received_at or s.assembled_at or s.arrived_at or s.finished_at:
        done.add(RECEIPT)
    if s.assembled_at or s.arrived_at or s.finished_at:
        done.add(ASSEMBLY)
    if s.arrived_at or s.finished_at:
        done.add(ARRIVAL)
    if s.finished_at:
        done.add(SITUATION)         # finished: no more situation reports owed
        if s.form_complete:
            done.add(REPORT)        # the 24 h report deadline is met only by a complete form
    return done
