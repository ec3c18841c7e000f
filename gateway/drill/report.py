"""The drill report: per team the minutes to receipt, assembly, arrival and report, on time or
late by the center's rules (day or night), who answered and how, every escalation step; the
hotline figures of the drill; what the simulated people did.  Terminal, CSV and HTML (with an
SVG chart of response times against the deadlines).

Everything the report says about the gateway comes from the database (gateway.reports.timings),
never from the plan: the plan is printed beside it so that a reader can see the two agree."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from sqlalchemy import and_, select

from gateway.escalation.deadlines import STAGE_WORD
from gateway.orders.summary import ACTION_WORD, OUTCOME_WORD
from gateway.orders.team_state import STATE_WORD
from gateway.reports.charts import minutes_chart
from gateway.reports.render import html_page, write_csv
from gateway.reports.timings import STEP_WORD, STEPS, TeamTiming, timings_tx
from gateway.storage.schema import hotline_calls

CHANNEL_WORD = {"sms": "短信", "keypad": "按键", "api": "接口"}
ROLE_WORD = {"commander": "指挥", "deputy": "副指挥"}
BEHAVIOUR_WORD = {"sms": "短信回复", "keypad": "按键回复", "silent": "不回复"}


@dataclass
class DrillReport:
    order_code: str
    started: datetime
    ended: datetime
    interrupted: bool
    time_zone: str
    teams: list                  # TeamTiming
    hotline: dict                # line -> {calls, answered, abandoned, failed}
    planned: dict                # team code -> behaviour (what the simulated people were to do)
    citizens: int                # calls the simulated citizens made


def _hotline_tx(conn, start: datetime, end: datetime) -> dict:
    figures: dict[str, dict] = {}
    for line, outcome in conn.execute(select(hotline_calls.c.line, hotline_calls.c.outcome).where(
            and_(hotline_calls.c.arrived_at >= start, hotline_calls.c.arrived_at <= end))):
        f = figures.setdefault(line, {"calls": 0, "answered": 0, "abandoned": 0, "failed": 0, "live": 0})
        f["calls"] += 1
        key = "abandoned" if outcome and outcome.startswith("abandoned") else (outcome or "live")
        f[key] = f.get(key, 0) + 1
    return dict(sorted(figures.items()))


def drill_report_tx(conn, cfg, code: str, started: datetime, ended: datetime, time_zone: str,
                    planned: dict, citizens: int, interrupted: bool = False) -> DrillReport:
    return DrillReport(code, started, ended, interrupted, time_zone,
                       timings_tx(conn, cfg, codes=[code], now=ended), _hotline_tx(conn, started, ended),
                       planned, citizens)


def _min(v) -> str:
    return "—" if v is None else f"{v:.1f}"


def _judged(t: TeamTiming, step: str) -> str:
    ok = t.on_time.get(step)
    return "" if step not in t.on_time or ok is None else ("按时" if ok else "超时")


def _answers(t: TeamTiming, zone) -> list[str]:
    return [f"{(a.at - t.sent_at).total_seconds() / 60:.1f}分 {STATE_WORD.get(a.status, a.status)} "
            f"{a.who.split(' (')[0]}({ROLE_WORD.get(a.who.rpartition('(')[2].rstrip(')'), '')}) "
            f"{CHANNEL_WORD.get(a.channel, a.channel)}" for a in t.answers]


def _steps(t: TeamTiming) -> list[str]:
    return [f"{(s.fired_at - t.sent_at).total_seconds() / 60:.1f}分 {STAGE_WORD.get(s.stage, s.stage)}"
            f"{ACTION_WORD.get(s.action, s.action)}" + (f"({OUTCOME_WORD.get(s.outcome, s.outcome)})" if s.outcome else "")
            for s in t.steps if s.fired_at is not None and s.state in ("fired", "firing")]


def text(r: DrillReport) -> str:
    zone = ZoneInfo(r.time_zone)
    first = r.teams[0] if r.teams else None
    out = [f"演练报告  指令 {r.order_code}  {r.started.astimezone(zone):%Y-%m-%d %H:%M}–"
           f"{r.ended.astimezone(zone):%H:%M}" + ("（中断）" if r.interrupted else "")]
    if first:
        day0 = first.sent_at.astimezone(zone).date()
        limits = "  ".join(f"{STEP_WORD[s]}限 {d.astimezone(zone):%H:%M}" if d.astimezone(zone).date() == day0
                           else f"{STEP_WORD[s]}限 {d.astimezone(zone):%m-%d %H:%M}" for s, d in first.deadlines.items())
        out.append(f"  规则 {first.rule}（{'夜间' if first.night else '白天'}）  {limits}")
    out.append(f"  {'队伍':<8}{'计划':<6}" + "".join(f"{STEP_WORD[s]:>8}" for s in STEPS) + "  状态")
    for t in r.teams:
        cells = "".join(f"{_min(t.minutes[s]):>6}{_judged(t, s):<2}" for s in STEPS)
        out.append(f"  {t.team_code:<8}{BEHAVIOUR_WORD.get(r.planned.get(t.team_code), '-'):<6}{cells}  "
                   f"{STATE_WORD.get(t.state, t.state)}")
        for line in _answers(t, zone):
            out.append(f"      回复 {line}")
        for line in _steps(t):
            out.append(f"      催办 {line}")
    out.append("  热线（演练期间）：" + ("  ".join(
        f"{line} 来电{f['calls']} 接听{f['answered']} 放弃{f['abandoned']} 失败{f['failed']}"
        for line, f in r.hotline.items()) or "无"))
    out.append(f"  模拟市民来电 {r.citizens} 次")
    return "\n".join(out)


CSV_COLUMNS = (["team_code", "team_name", "planned", "state"] + [f"{s}_min" for s in STEPS]
               + [f"{s}_on_time" for s in ("assembled", "arrived", "finished")]
               + ["answers", "escalation_steps"])


def csv_text(r: DrillReport) -> str:
    rows = []
    zone = ZoneInfo(r.time_zone)
    for t in r.teams:
        rows.append([t.team_code, t.team_name, r.planned.get(t.team_code, ""), t.state]
                    + [_min(t.minutes[s]).replace("—", "") for s in STEPS]
                    + [{True: "yes", False: "no", None: ""}[t.on_time.get(s)] for s in ("assembled", "arrived", "finished")]
                    + [" | ".join(_answers(t, zone)), " | ".join(_steps(t))])
    return write_csv(CSV_COLUMNS, rows)


def html(r: DrillReport, cfg) -> str:
    zone = ZoneInfo(r.time_zone)
    head = "<tr><th>队伍</th><th>名称</th><th>计划</th>" + "".join(f"<th>{STEP_WORD[s]}（分）</th>" for s in STEPS) + \
        "<th>状态</th><th>谁、如何回复</th><th>催办</th></tr>"
    body = "".join(
        f"<tr><td>{escape(t.team_code)}</td><td>{escape(t.team_name)}</td>"
        f"<td>{BEHAVIOUR_WORD.get(r.planned.get(t.team_code), '-')}</td>"
        + "".join(f"<td class='{'late' if _judged(t, s) == '超时' else ''}'>{_min(t.minutes[s])} {_judged(t, s)}</td>"
                  for s in STEPS)
        + f"<td>{escape(STATE_WORD.get(t.state, t.state))}</td><td>{'<br>'.join(map(escape, _answers(t, zone)))}</td>"
        f"<td>{'<br>'.join(map(escape, _steps(t)))}</td></tr>" for t in r.teams)
    hot = "".join(f"<tr><td>{escape(line)}</td><td>{f['calls']}</td><td>{f['answered']}</td><td>{f['abandoned']}</td>"
                  f"<td>{f['failed']}</td></tr>" for line, f in r.hotline.items())
    deadlines = {}
    if r.teams:
        t0 = r.teams[0]
        for step, d in t0.deadlines.items():
            if step != "finished":
                deadlines[f"{STEP_WORD[step]}时限"] = round((d - t0.sent_at).total_seconds() / 60, 1)
    chart = minutes_chart([f"{t.team_code} {t.team_name}" for t in r.teams],
                          {"接收": [t.minutes["received"] for t in r.teams],
                           "到达": [t.minutes["arrived"] for t in r.teams]},
                          deadlines, f"演练 {r.order_code}：响应时间与时限") if r.teams else ""
    return html_page(f"演练报告 {r.order_code}", (
        f"<h1>演练报告 指令 {escape(r.order_code)}</h1><p>{r.started.astimezone(zone):%Y-%m-%d %H:%M} – "
        f"{r.ended.astimezone(zone):%H:%M}（{escape(r.time_zone)}）" + ("，演练中断" if r.interrupted else "") + "</p>"
        f"<table>{head}{body}</table>{chart}<h2>热线</h2><table><tr><th>线路</th><th>来电</th><th>接听</th>"
        f"<th>放弃</th><th>失败</th></tr>{hot}</table><p>模拟市民来电 {r.citizens} 次</p>"))
