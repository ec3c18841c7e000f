"""What the wall board shows, read in one transaction: every active team, the order in focus
(the newest open one, or the one asked for), the other open orders, today's hotline figures per
line and the call-back list; the caller history of calls ringing now, the CAP warning's full text
for the order in focus and the CAP proposals waiting for a person.  No HTML here (adapters/board.py draws it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.cap import store as cap_store
from gateway.hotline import store as hotline_store
from gateway.hotline.callers import HotlineSection, history_tx
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
    valid_rate: float | None = None      # today's calls marked valid, of all calls
    flagged_share: float | None = None   # today's calls from flagged numbers


@dataclass
class BoardData:
    now: datetime
    teams: list[TeamRef]
    focus: OrderSummary | None
    others: list[OtherOrder]
    hotline: list[HotlineLine]
    callbacks: list[dict] = field(default_factory=list)   # the oldest pending, for the call-takers
    ringing: list[tuple] = field(default_factory=list)    # (call, caller history) of calls live now
    full_text: str | None = None                           # the CAP warning the order in focus was made from
    proposals: list[dict] = field(default_factory=list)   # CAP proposals waiting for a person to confirm


def board_tx(conn, cfg, time_zone: str, now: datetime, focus_code: str | None = None,
             callbacks_shown: int = 3, callers_cfg: HotlineSection | None = None) -> BoardData:
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
    full_text = cap_store.full_texts_tx(conn, [focus.order_id]).get(focus.order_id) if focus else None
    return BoardData(now, teams, focus, others, hotline_today(conn, time_zone, now),
                     hotline_store.callback_list(conn)[:callbacks_shown],
                     ringing_tx(conn, now, callers_cfg or HotlineSection()), full_text,
                     cap_store.pending_proposals_tx(conn))


def ringing_tx(conn, now: datetime, callers_cfg: HotlineSection) -> list[tuple]:
    """Calls live now (IVR, queue or answered), oldest first, each with its caller's history (flags)."""
    calls = hotline_store.open_calls(conn)          # oldest first; an answered call's taker wants it too
    return [(c, history_tx(conn, c.caller, _dt(c.arrived_at) or now, callers_cfg, c.call_id)) for c in calls]


def _dt(value) -> datetime | None:
    """Hotline records carry epoch seconds in memory and datetimes (naive = UTC) from the database."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(value, timezone.utc)


def hotline_today(conn, time_zone: str, now: datetime) -> list[HotlineLine]:
    """Per line: today's calls, answered, abandoned; call-backs pending; calls waiting now."""
    day = now.astimezone(ZoneInfo(time_zone)).date()
    figures = hotline_store.line_figures(conn, day, time_zone)
    lines = {name: HotlineLine(name, f["calls"], f["answered"], f["abandoned"],
                               valid_rate=f["valid_rate"], flagged_share=f["flagged_share"])
             for name, f in figures.items()}
    for c in hotline_store.callback_list(conn):
        lines.setdefault(c["line"], HotlineLine(c["line"])).callbacks += 1
    for c in hotline_store.open_calls(conn):
        if c.answered_at is None:
            lines.setdefault(c.line, HotlineLine(c.line)).waiting += 1
    return [lines[k] for k in sorted(lines)]
