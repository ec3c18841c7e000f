"""GET /board: the status board on the command hall's wall screen.

One self-refreshing HTML page: every open order with each team's state and the time it took,
the hotline calls in progress and waiting to be called back, and the health of the modems and
the Asterisk link.  Server-rendered, no script: it must work on whatever browser the wall has.
"""
from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from zoneinfo import ZoneInfo

from sqlalchemy import select
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET

from adapters.http import JsonResource
from adapters.masking import mask_number
from gateway.health import collect
from gateway.hotline import store as hotline_store
from gateway.mode import DRILL
from gateway.orders.summary import TIMELINE_WORD, load_summary_tx, timeline_text
from gateway.storage.schema import orders as orders_table

log = Logger()

STATE_WORD = {"queued": "待发送", "sent": "已发送", "delivered": "已送达", "received": "已收到", "assembled": "已集结",
              "arrived": "已到达", "finished": "处置完毕", "unreachable": "联系不上", "declined": "无法执行"}
STATE_COLOUR = {"queued": "#b00", "sent": "#b00", "delivered": "#c60", "received": "#c90", "assembled": "#08a",
                "arrived": "#08a", "finished": "#070", "unreachable": "#b00", "declined": "#b00"}


def _board_tx(conn, cfg, limit: int = 20):
    codes = [r.code for r in conn.execute(select(orders_table.c.code).where(orders_table.c.state == "open")
                                          .order_by(orders_table.c.created_at.desc()).limit(limit))]
    summaries = [s for s in (load_summary_tx(conn, c, cfg) for c in codes) if s is not None]
    summaries.sort(key=lambda s: s.drill)        # real incidents first; drills after, marked
    live = [c for c in hotline_store.open_calls(conn)]
    callbacks = hotline_store.callback_list(conn)
    return summaries, live, callbacks


def _sees_full_numbers(request) -> bool:
    """Only a dispatch (or admin) key sees whole numbers; the wall's read key gets the last four."""
    principal = getattr(request, "principal", None)
    return principal is not None and principal.sees_full_numbers


class BoardResource(JsonResource):
    isLeaf = True

    def __init__(self, clock, database, esc_cfg, time_zone: str, health=(), refresh_s: int = 5,
                 mode: str = "live"):
        super().__init__()
        self.clock, self.database, self.cfg = clock, database, esc_cfg
        self.tz = ZoneInfo(time_zone)
        self.health = health            # callables -> PartHealth(s) (gateway/health.py)
        self.refresh_s = refresh_s
        self.drill = mode == DRILL

    def render_GET(self, request):
        self._render(request)
        return NOT_DONE_YET

    @inlineCallbacks
    def _render(self, request):
        try:
            summaries, live, callbacks = yield self.database.run(_board_tx, self.cfg)
            body = self.page(summaries, live, callbacks, full_numbers=_sees_full_numbers(request))
            status = 200
        except Exception:  # noqa: BLE001 - the wall shows that something is wrong, never a blank page
            log.failure("status board: could not read the database")
            body = self._wrap("<p class=bad>数据库不可用 — database unreachable; see the gateway log</p>")
            status = 503
        if request._disconnected:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.write(body.encode())
        request.finish()

    def _local(self, dt) -> str:
        if dt is None:
            return "-"
        return dt.astimezone(self.tz).strftime("%H:%M")

    def page(self, summaries, live, callbacks, full_numbers: bool = False) -> str:
        def number(n):
            return (n if full_numbers else mask_number(n)) or "-"
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        parts = [f"<h1>一呼百应 指挥调度 <small>{now.astimezone(self.tz):%Y-%m-%d %H:%M:%S}</small></h1>"]
        checks = collect(self.health)
        if checks:
            parts.append("<p>" + " ".join(
                f"<span class={'ok' if p.ok or not p.enabled else 'bad'}>{escape(p.name)}: {escape(p.detail)}</span>"
                for p in checks) + "</p>")
        drills = sum(1 for s in summaries if s.drill)
        parts.append(f"<h2>进行中的指令 Open orders ({len(summaries) - drills} 实战 real"
                     + (f", {drills} 演练 drill" if drills else "") + ")</h2>")
        if not summaries:
            parts.append("<p>无 — none</p>")
        for s in summaries:
            rows = []
            for t in s.teams:
                took = " ".join(f"{STATE_WORD.get(k, k)}+{int(v // 60)}m" for k, v in (t.took or {}).items())
                steps = len(t.steps)
                state = t.shown_state
                colour = STATE_COLOUR.get(state, "#333")
                rows.append(f"<tr><td>{escape(t.team_code)}</td><td>{escape(t.team_name)}</td>"
                            f"<td style='color:{colour};font-weight:bold'>{escape(STATE_WORD.get(state, state))}</td>"
                            f"<td>{escape(t.answered_by or '-')}</td><td>{escape(took)}</td>"
                            f"<td>{'催办 ' + str(steps) if steps else ''}</td></tr>")
            tag = "<span class=drilltag>演练 DRILL</span> " if s.drill else ""
            parts.append(f"<h3>{tag}{'<span class=bad>【重大】</span>' if s.major else ''}{escape(s.code)} · "
                         f"{escape(s.incident_ref)} · 下达 {self._local(s.sent_at)} · "
                         f"现场指挥 {escape(s.onscene_commander)}</h3><p>{escape(s.text)}</p>"
                         "<table><tr><th>队伍</th><th></th><th>状态</th><th>回复人</th><th>用时</th><th>升级</th></tr>"
                         + "".join(rows) + "</table>" + self._timeline(s))
        parts.append(f"<h2>热线通话中 Hotline calls in progress ({len(live)})</h2>")
        parts.append("<table><tr><th>线路</th><th>来电</th><th>到达</th><th>状态</th></tr>" + "".join(
            f"<tr><td>{escape(c.line)}</td><td>{escape(number(c.caller))}</td>"
            f"<td>{self._local(_dt(c.arrived_at))}</td>"
            f"<td>{'已接听 ' + escape(c.call_taker or '') if c.answered_at else ('排队' if c.queue_joined_at else '语音导航')}</td></tr>"
            for c in live) + "</table>")
        parts.append(f"<h2>待回拨 Call-backs ({len(callbacks)})</h2>")
        parts.append("<table><tr><th>线路</th><th>来电</th><th>时间</th><th>结果</th></tr>" + "".join(
            f"<tr><td>{escape(str(c.get('line')))}</td><td>{escape(number(c.get('caller')))}</td>"
            f"<td>{self._local(c.get('arrived_at'))}</td><td>{escape(str(c.get('outcome')))}</td></tr>"
            for c in callbacks) + "</table>")
        return self._wrap("\n".join(parts))

    TIMELINE_ROWS = 8

    def _timeline(self, s) -> str:
        """The order's latest situation reports and leaders' notes (the leaders' SMS stay in the API)."""
        shown = [e for e in s.timeline if e.kind != "leader_sms"][-self.TIMELINE_ROWS:]
        if not shown:
            return ""
        return ("<table class=timeline><tr><th>时间线</th><th></th><th></th></tr>" + "".join(
            f"<tr><td>{self._local(e.at)}</td><td>{escape(TIMELINE_WORD.get(e.kind, e.kind))} {escape(e.who)}</td>"
            f"<td>{escape(timeline_text(e))}</td></tr>" for e in shown) + "</table>")

    def _wrap(self, inner: str) -> str:
        # Drill mode: a banner no one can miss, repeated at the bottom, and a striped background,
        # so that a wall showing the emulators is never read as the real county.
        banner = ("<div class=drill>演练 DRILL — 模拟设备，无真实短信与电话 — emulated modems and Asterisk, "
                  "nothing leaves this machine</div>") if self.drill else ""
        title = "演练 DRILL · Yihu status board" if self.drill else "Yihu status board"
        return ("<!doctype html><html lang=zh><head><meta charset=utf-8>"
                f"<meta http-equiv=refresh content={self.refresh_s}><title>{title}</title><style>"
                "body{font-family:sans-serif;background:#fff;color:#111;margin:1em}table{border-collapse:collapse}"
                "td,th{border:1px solid #999;padding:.2em .6em}.ok{color:#070}.bad{color:#b00;font-weight:bold}"
                "span{margin-right:1.5em}"
                ".drill{background:#fd0;color:#000;font-size:3em;font-weight:bold;text-align:center;"
                "padding:.3em;border:.2em solid #000;margin:.2em 0}"
                ".drilltag{background:#fd0;color:#000;font-weight:bold;padding:0 .3em}"
                + ("body{background:repeating-linear-gradient(45deg,#fff,#fff 40px,#fff6c0 40px,#fff6c0 80px)}"
                   if self.drill else "")
                + "</style></head><body>" + banner + inner + banner + "</body></html>")


def _dt(value):
    """Hotline records carry epoch seconds in memory and datetimes from the database."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(value, timezone.utc)
