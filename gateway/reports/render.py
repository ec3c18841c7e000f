"""The assessment as a terminal table, CSV and HTML (with its charts)."""
from __future__ import annotations

import csv
import io
from html import escape

from gateway.reports.assessment import Assessment, TeamScore
from gateway.reports.charts import minutes_chart
from gateway.reports.timings import STEP_WORD, STEPS

CATEGORY_WORD = {"real": "实战", "drill": "演练"}
DEADLINE_STEPS = ("assembled", "arrived", "finished")
ASSESSMENT_COLUMNS = (["category", "team_code", "team_name", "team_kind", "orders"]
                      + [f"{k}_{s}_min" for s in STEPS for k in ("median", "p90")]
                      + [f"on_time_{s}" for s in DEADLINE_STEPS] + ["silences", "escalations"])


def _num(v) -> str:
    return "" if v is None else f"{v:g}"


def _pct(v) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def assessment_rows(a: Assessment) -> list[list]:
    rows = []
    for s in a.scores:
        rows.append([s.category, s.team_code, s.team_name, s.team_kind, s.orders]
                    + [_num(getattr(s, f"{k}_minutes").get(st)) for st in STEPS for k in ("median", "p90")]
                    + [_num(s.on_time_rate.get(st)) for st in DEADLINE_STEPS] + [s.silences, s.escalations])
    return rows


def write_csv(columns, rows) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    return out.getvalue()


def assessment_csv(a: Assessment) -> str:
    return write_csv(ASSESSMENT_COLUMNS, assessment_rows(a))


def assessment_text(a: Assessment) -> str:
    lines = [f"考核 {a.start} 至 {a.end}（{a.time_zone}）"]
    for category in ("real", "drill"):
        scores = [s for s in a.scores if s.category == category]
        if not scores:
            continue
        lines.append(f"\n{CATEGORY_WORD[category]}  队伍 指令数  接收中位/P90  集结  到达  报告（分钟）  "
                     "按时率 集结/到达/报告  沉默 催办")
        for s in scores:
            times = "  ".join(f"{_num(s.median_minutes[st]) or '-'}/{_num(s.p90_minutes[st]) or '-'}" for st in STEPS)
            rates = "/".join(_pct(s.on_time_rate.get(st)) for st in DEADLINE_STEPS)
            lines.append(f"  {s.team_code:<8} {s.orders:>3}  {times}  {rates}  {s.silences} {s.escalations}")
    if not a.scores:
        lines.append("（此期间没有指令）")
    return "\n".join(lines)


def _table(scores: list[TeamScore]) -> str:
    head = ("<tr><th>队伍</th><th>名称</th><th>指令</th>"
            + "".join(f"<th>{STEP_WORD[s]}中位/P90</th>" for s in STEPS)
            + "".join(f"<th>{STEP_WORD[s]}按时率</th>" for s in DEADLINE_STEPS) + "<th>沉默</th><th>催办</th></tr>")
    body = "".join(
        f"<tr><td>{escape(s.team_code)}</td><td>{escape(s.team_name)}</td><td>{s.orders}</td>"
        + "".join(f"<td>{_num(s.median_minutes[st]) or '—'} / {_num(s.p90_minutes[st]) or '—'}</td>" for st in STEPS)
        + "".join(f"<td>{_pct(s.on_time_rate.get(st))}</td>" for st in DEADLINE_STEPS)
        + f"<td>{s.silences}</td><td>{s.escalations}</td></tr>" for s in scores)
    return f"<table>{head}{body}</table>"


def html_page(title: str, body: str) -> str:
    return ("<!doctype html><html lang=zh-CN><head><meta charset=utf-8>"
            f"<title>{escape(title)}</title><style>body{{font-family:'Microsoft YaHei','PingFang SC',"
            "'Noto Sans CJK SC',sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #999;padding:.2em .5em;text-align:center}.late{color:#b71c1c;font-weight:bold}"
            "svg{max-width:100%;height:auto}</style></head><body>" + body + "</body></html>")


def assessment_html(a: Assessment, cfg) -> str:
    parts = [f"<h1>队伍考核 {a.start} 至 {a.end}</h1><p>时区 {escape(a.time_zone)}；时间为下达指令后的分钟数；"
             "按时率只计已到期限的指令。</p>"]
    for category in ("real", "drill"):
        scores = [s for s in a.scores if s.category == category]
        if not scores:
            continue
        parts.append(f"<h2>{CATEGORY_WORD[category]}</h2>" + _table(scores))
        labels = [f"{s.team_code} {s.team_name}" for s in scores]
        parts.append(minutes_chart(
            labels, {"到达中位": [s.median_minutes["arrived"] for s in scores],
                     "到达P90": [s.p90_minutes["arrived"] for s in scores],
                     "集结中位": [s.median_minutes["assembled"] for s in scores]},
            {"白天到达": cfg.arrive_day_minutes, "夜间到达": cfg.arrive_night_minutes,
             "白天集结": cfg.assemble_day_minutes},
            f"{CATEGORY_WORD[category]}：响应时间与时限"))
    if not a.scores:
        parts.append("<p>此期间没有指令。</p>")
    return html_page(f"队伍考核 {a.start} 至 {a.end}", "".join(parts))
