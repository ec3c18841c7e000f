"""What the wall board shows, read in one transaction: every active team, the order in focus
(the newest open one, or the one asked for), the other open orders, today's hotline figures per
line and the call-back list.  No HTML here (adapters/board.py draws it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.hotline import store as hotline_store
from gateway.orders.roster_check import ROSTER_CHECK
from gateway.orders.summary import OrderSummary, load_summary_tx
from gateway.storage.schema import teams as teams_table

KIND_ORDER = ("public", "professional", "expert")


@dataclass(frozen=True)
class TeamRef:
    code: str
    name: str
    kind: str


@dataclass(frozen=True)
class OtherOrder:
    code: str
    incident_ref: str
    counts: dict                # state -> teams
    drill: bool = False
    major: bool = False


@dataclass
class HotlineLine:
    line: str
    calls: int = 0
    answered: int = 0
    abandoned: int = 0
    callbacks: int = 0          # waiting for a call-back (from any day)
    waiting: int = 0            # calls in the IVR or the queue now


@dataclass
class BoardData:
    now: datetime
    teams: list[TeamRef]
    focus: OrderSummary | None
    others: list[OtherOrder]
    hotline: list[HotlineLine]
    callbacks: list[dict] = field(default_factory=list)   # the oldest pending, for the call-takers


def board_tx(conn, cfg, time_zone: str, now: datetime, focus_code: str | None = None,
             callbacks_shown: int = 3) -> BoardData:
    from gateway.orders.cli import _list_tx
    team_rows = conn.execute(select(teams_table.c.code, teams_table.c.name, teams_table.c.kind)
                             .where(teams_table.c.active.is_(True))).all()
    teams = sorted((TeamRef(r.code, r.name, r.kind) for r in team_rows),
                   key=lambda t: (KIND_ORDER.index(t.kind) if t.kind in KIND_ORDER else 9, t.code))
    open_rows, counts = _list_tx(conn, False)
    open_rows = [r for r in open_rows if r.kind != ROSTER_CHECK]      # a roster check is not for the wall
    # Real incidents first, a major one (重大) before the others; drills after, marked; newest first.
    open_rows.sort(key=lambda r: (bool(r.drill), not r.major))
    focus = None
    if focus_code:
        focus = load_summary_tx(conn, focus_code, cfg)
    if focus is None and open_rows:
        focus = load_summary_tx(conn, open_rows[0].code, cfg)
    others = [OtherOrder(r.code, r.incident_ref, counts.get(r.id, {}), bool(r.drill), bool(r.major)) for r in open_rows
              if focus is None or r.id != focus.order_id]
    return BoardData(now, teams, focus, others, hotline_today(conn, time_zone, now),
                     hotline_store.callback_list(conn)[:callbacks_shown])


def hotline_today(conn, time_zone: str, now: datetime) -> list[HotlineLine]:
    """Per line: today's calls, answered, abandoned; call-backs pending; calls waiting now."""
    day = now.astimezone(ZoneInfo(time_zone)).date()
    figures = hotline_store.line_figures(conn, day, time_zone)
    lines = {name: HotlineLine(name, f["calls"], f["answered"], f["abandoned"]) for name, f in figures.items()}
    for c in hotline_store.callback_list(conn):
        lines.setdefault(c["line"], HotlineLine(c["line"])).callbacks += 1
    for c in hotline_store.open_calls(conn):
        if c.answered_at is None:
            lines.setdefault(c.line, HotlineLine(c.line)).waiting += 1
    return [lines[k] for k in sorted(lines)]
