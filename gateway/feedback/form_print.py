"""The formal feedback form as one printable page (HTML) for the archive."""
from __future__ import annotations

from html import escape
from zoneinfo import ZoneInfo

from gateway.feedback.form import FIELD_WORD, missing

_ROWS = ("result", "follow_up", "responsible_person", "responsible_unit", "casualties", "remarks")


def render_html(ot, form: dict, time_zone: str) -> str:
    zone = ZoneInfo(time_zone)

    def when(t):
        return t.astimezone(zone).strftime("%Y-%m-%d %H:%M") if t else "—"

    def value(name):
        v = form.get(name)
        if name == "follow_up":
            return "—" if v is None else ("是" if v else "否")
        return escape(v) if v else "—"
    need = missing({k: form.get(k) for k in _ROWS})
    status = "齐全" if not need else "未齐全：缺 " + "、".join(FIELD_WORD[f] for f in need)
    rows = "".join(f"<tr><th>{FIELD_WORD[n]}</th><td>{value(n)}</td></tr>" for n in _ROWS)
    return ("<!doctype html><html lang=zh><head><meta charset=utf-8>"
            f"<title>正式反馈单 {escape(ot.code)} {escape(ot.team_code)}</title><style>"
            "@page{size:A4;margin:18mm}body{font-family:serif;max-width:170mm;margin:auto}"
            "h1{text-align:center;font-size:20pt;letter-spacing:.3em}table{width:100%;border-collapse:collapse}"
            "th,td{border:1px solid #000;padding:6px 8px;text-align:left;vertical-align:top}th{width:28%}"
            ".meta td,.meta th{border:none;padding:2px 4px}.sign{margin-top:24mm}</style></head><body>"
            "<h1>正式反馈单</h1>"
            f"<table class=meta><tr><th>指令编号</th><td>{escape(ot.code)}</td><th>事件编号</th>"
            f"<td>{escape(ot.incident_ref)}</td></tr><tr><th>反馈队伍</th><td>{escape(ot.team_name)} "
            f"({escape(ot.team_code)})</td><th>指令下达</th><td>{when(ot.created_at)}</td></tr>"
            f"<tr><th>处置完毕</th><td>{when(ot.finished_at)}</td><th>反馈单</th><td>{status}</td></tr></table>"
            f"<table style='margin-top:6mm'>{rows}</table>"
            f"<p>最后填写：{escape(form.get('updated_by') or '—')} {when(form.get('updated_at'))}；"
            f"齐全于：{when(form.get('completed_at'))}</p>"
            "<p class=sign>审核人签字：____________　　日期：____________</p></body></html>")
