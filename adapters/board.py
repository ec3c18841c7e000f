"""GET /board: the command hall's wall (1920x1080, read from across the hall), in Chinese.

All active teams as tiles grouped as the center groups them (public, professional, expert), each
coloured by its state in the order in focus (the newest open order, or `?order=CODE`), with the
minutes since the order and the deadline it is measured against; silent and late teams stand
out and head the attention list.  The order in focus with its counts per state, the other open
orders as a strip, today's hotline figures per line (with the valid rate and the share of calls from
flagged numbers), the calls ringing now with their callers' flags (repeat, often invalid, nuisance),
the CAP warning's full text for an order made from one, CAP proposals waiting to be confirmed, the
health of every part, the drill banner.

Server-rendered: the page is whole without a script.  A small script of its own (board.js, no
CDN) listens to /events and swaps in a fresh page body on every order or hotline event, so the
wall changes within a second without a reload or a jump; without scripts a plain refresh.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET

from adapters.board_data import BoardData, HotlineLine, board_tx
from adapters.http import JsonResource
from adapters.masking import mask_number
from gateway.escalation.deadlines import STAGE_WORD
from gateway.health import PartHealth, collect, overall
from gateway.mode import DRILL
from gateway.orders.standing import Standing, team_standing
from gateway.orders.summary import TIMELINE_WORD, timeline_text
from gateway.orders.team_state import STATE_WORD

log = Logger()

COLUMNS = 8
STANDBY = "standby"
STANDBY_WORD = "待命"
KIND_WORD = {"public": "公共救援", "professional": "专业队伍", "expert": "专家"}
CHANNEL_WORD = {"sms": "短信", "keypad": "按键"}
STAGE_SHORT = {"assembly": "集结", "arrival": "到达", "report": "报告"}
# Every wall, whatever its OS: Windows, macOS, then Linux (Debian's fonts-noto-cjk), then any.
FONT_STACK = ('"Microsoft YaHei", "微软雅黑", "PingFang SC", "Hiragino Sans GB", "Noto Sans CJK SC", '
              '"Source Han Sans SC", "WenQuanYi Micro Hei", "SimHei", sans-serif')
SCRIPT = (Path(__file__).with_name("board.js")).read_text("utf-8")
_SUFFIXES = ("综合应急救援分队", "应急救援分队", "应急救援队", "专业队", "分队")


def short_name(name: str) -> str:
    """白塔镇综合应急救援分队 -> 白塔镇: the part that tells teams apart from across the hall."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _sees_full_numbers(request) -> bool:
    """Only a dispatch (or admin) key sees whole numbers; the wall's read key gets the last four."""
    principal = getattr(request, "principal", None)
    return principal is not None and principal.sees_full_numbers


class BoardResource(JsonResource):
    isLeaf = True

    def __init__(self, clock, database, esc_cfg, time_zone: str, health=(), refresh_s: int = 15,
                 node: str = "", mode: str = "live", callers=None):
        super().__init__()
        self.clock, self.database, self.cfg = clock, database, esc_cfg
        self.time_zone = time_zone
        self.tz = ZoneInfo(time_zone)
        self.health = health            # what /health checks: callables -> PartHealth(s) (gateway/health.py)
        self.node = node
        self.drill = mode == DRILL      # the drill banner (演练): every part is an emulator
        self.refresh_s = refresh_s
        self.callers = callers          # the [hotline] section: when a caller is flagged (gateway/hotline/callers.py)

    def render_GET(self, request):
        self._render(request)
        return NOT_DONE_YET

    @inlineCallbacks
    def _render(self, request):
        focus = (request.args.get(b"order") or [b""])[-1].decode("utf-8", "replace")[:16] or None
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        try:
            data = yield self.database.run(board_tx, self.cfg, self.time_zone, now, focus,
                                          callers_cfg=self.callers)
            body = self.page(data, full_numbers=_sees_full_numbers(request))
            status = 200
        except Exception:  # noqa: BLE001 - the wall shows that something is wrong, never a blank page
            log.failure("status board: could not read the database")
            body = self._wrap("<div id=board><p class=bad>数据库不可用，请查看网关日志</p></div>")
            status = 503
        if request._disconnected:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.write(body.encode())
        request.finish()

    # --- the page ----------------------------------------------------------------------------
    def _hhmm(self, dt: datetime | None, day0=None) -> str:
        if dt is None:
            return "-"
        local = dt.astimezone(self.tz)
        if day0 is not None and local.date() != day0:
            return f"次日{local:%H:%M}" if (local.date() - day0).days == 1 else f"{local:%m-%d %H:%M}"
        return f"{local:%H:%M}"

    def page(self, data: BoardData, full_numbers: bool = False) -> str:
        standings = {}
        if data.focus is not None:
            standings = {t.team_code: (t, team_standing(t, data.focus, data.now, self.cfg))
                         for t in data.focus.teams}
        inner = (self._header(data, standings) + self._tiles(data, standings)
                 + "<aside>" + _warning(data.full_text) + _proposals(data.proposals)
                 + self._attention(standings, {t.code: i for i, t in enumerate(data.teams)})
                 + self._timeline(data.focus) + self.hotline_strip(data.hotline, data.callbacks, full_numbers)
                 + ringing_strip(data.ringing, full_numbers)
                 + self._health() + "</aside>" + self._others(data))
        return self._wrap(f"<div id=board data-drill={'1' if self.drill else '0'}"
                          f" data-order='{escape(data.focus.code) if data.focus else ''}'>{inner}</div>")

    def _header(self, data: BoardData, standings: dict) -> str:
        banner = "<div class=drill>演练</div>" if self.drill else ""
        clock = f"<div class=clock>{data.now.astimezone(self.tz):%H:%M}</div>"
        s = data.focus
        if s is None:
            return f"<header>{banner}<div class=focus><b>一呼百应</b> 无进行中的指令</div>{clock}</header>"
        day0 = s.sent_at.astimezone(self.tz).date()
        limits = "　".join(f"{STAGE_WORD[k]}限{self._hhmm(v, day0)}" for k, v in s.deadlines.items()
                          if k not in ("receipt", "report"))
        counts: dict[str, int] = {}
        for t, _ in standings.values():
            counts[t.shown_state] = counts.get(t.shown_state, 0) + 1
        chips = "".join(f"<span class='count s-{escape(k)}'>{STATE_WORD.get(k, k)} {n}</span>"
                        for k, n in sorted(counts.items(), key=lambda kv: _STATE_RANK.get(kv[0], 9)))
        silent = sum(1 for _, st in standings.values() if st.silent)
        late = sum(1 for _, st in standings.values() if st.late)
        flags = (f"<span class='count flag'>未回复 {silent}</span>" if silent else "") + \
                (f"<span class='count flag'>超时 {late}</span>" if late else "")
        minutes = max(0, int((data.now - s.sent_at).total_seconds() // 60))
        tag = _order_tags(s.drill, s.major)
        return (f"<header>{banner}<div class=focus><div class=line1>{tag}<b>指令 {escape(s.code)}</b> "
                f"{escape(s.incident_ref)}　下达 {self._hhmm(s.sent_at)}　已过 {minutes} 分　{limits}</div>"
                f"<div class=line2>{flags}{chips}<span class=text>{escape(s.text)}</span></div></div>"
                f"{clock}</header>")

    def _tiles(self, data: BoardData, standings: dict) -> str:
        groups: dict[str, list] = {}
        for team in data.teams:
            groups.setdefault(team.kind, []).append(team)
        out = []
        for kind, members in groups.items():
            rows = math.ceil(len(members) / COLUMNS)
            tiles = "".join(self._tile(team, *standings.get(team.code, (None, None)), data)
                            for team in members)
            out.append(f"<section class=group style='flex:{rows}'><h2>{KIND_WORD.get(kind, kind)}"
                       f"<small>{len(members)}</small></h2><div class=grid style='grid-template-rows:"
                       f"repeat({rows},1fr)'>{tiles}</div></section>")
        return "<main id=tiles>" + "".join(out) + "</main>"

    def _tile(self, team, line, st: Standing | None, data: BoardData) -> str:
        name = escape(short_name(team.name))
        head = f"data-team='{escape(team.code)}' title='{escape(team.code)} {escape(team.name)}'"
        if line is None:
            return (f"<div class='tile s-{STANDBY}' {head} data-state={STANDBY}><div class=name>{name}</div>"
                    f"<div class=state>{STANDBY_WORD}</div><div class=meta>{escape(team.code)}</div></div>")
        flags = [c for c, on in (("silent", st.silent), ("late", st.late)) if on]
        if st.stage == "report":      # always the next day: "within 24 h" says it in less room
            deadline = f"{self.cfg.report_hours:g}h内报告"
        else:
            deadline = f"{STAGE_SHORT[st.stage]}限 {self._hhmm(st.deadline)}" if st.deadline else "已完成"
        if st.silent:
            note = "⚠未回复"        # how often chased: in the attention list
        elif st.late:
            note = "⚠超时"
        else:
            note = CHANNEL_WORD.get(line.channel, "") + (_role(line.answered_by) if line.answered_by else "")
        # data-state is the team's state (the API's); the colour and word say 待发送 while its SMS waits
        shown = line.shown_state
        return (f"<div class='tile s-{escape(shown)} {' '.join(flags)}' {head} "
                f"data-state='{escape(line.state)}' data-flags='{' '.join(flags)}'>"
                f"<div class=name>{name}</div><div class=state>{STATE_WORD.get(shown, escape(shown))}</div>"
                f"<div class=meta>{deadline}</div><div class=note>{st.minutes}分 {note}</div></div>")

    def _attention(self, standings: dict, place: dict, shown: int = 6) -> str:
        """Silent teams first, then late, then declined; within each, as on the wall."""
        needing = [(t, st) for t, st in standings.values() if st.needs_attention]
        needing.sort(key=lambda ts: (0 if ts[1].silent else 1 if ts[1].late else 2, place.get(ts[0].team_code, 0)))
        rows = []
        for t, st in needing[:shown]:
            why = "未回复" if st.silent else ("超时" if st.late else STATE_WORD.get(st.state, st.state))
            rows.append(f"<li class=flagged data-team='{escape(t.team_code)}'><b>{escape(short_name(t.team_name))}</b>"
                        f" {why}{f' 催办{len(t.steps)}' if t.steps else ''}</li>")
        if len(needing) > shown:
            rows.append(f"<li>另有 {len(needing) - shown} 支</li>")
        return (f"<section class=attention><h3>需关注 {len(needing)}</h3><ul>"
                + ("".join(rows) or "<li class=ok>无</li>") + "</ul></section>")

    def hotline_strip(self, lines: list[HotlineLine], callbacks: list[dict], full_numbers: bool) -> str:
        """Today's figures per hotline line and the oldest calls waiting for a call-back."""
        head = "<tr><th>热线</th><th>来电</th><th>接听</th><th>放弃</th><th>待回拨</th><th>排队</th></tr>"
        body = "".join(f"<tr data-line='{escape(x.line)}'><th>{escape(x.line)}</th><td>{x.calls}</td>"
                       f"<td>{x.answered}</td><td>{x.abandoned}</td><td class='{'warn' if x.callbacks else ''}'>"
                       f"{x.callbacks}</td><td class='{'warn' if x.waiting else ''}'>{x.waiting}</td></tr>"
                       for x in lines)
        waiting = "".join(
            f"<li>{escape(str(c.get('line')))} {escape((c.get('caller') if full_numbers else mask_number(c.get('caller'))) or '未知号码')}"
            f" {self._hhmm(c.get('arrived_at'))}</li>" for c in callbacks)
        return (f"<section class=hotline><h3>今日热线</h3><table>{head}{body}</table>{_quality(lines)}"
                + (f"<ul class=callbacks>{waiting}</ul>" if waiting else "") + "</section>")

    def _timeline(self, s, shown: int = 4) -> str:
        """A major order's latest situation reports and leaders' notes (the leaders' SMS stay in the API)."""
        entries = [e for e in (s.timeline if s is not None else []) if e.kind != "leader_sms"][-shown:]
        if not entries:
            return ""
        return ("<section class=timeline><h3>现场动态</h3><ul>" + "".join(
            f"<li>{self._hhmm(e.at)} {escape(TIMELINE_WORD.get(e.kind, e.kind))} {escape(short_name(e.who))}："
            f"{escape(timeline_text(e))}</li>" for e in entries) + "</ul></section>")

    def _health(self) -> str:
        return "<section class=health><h3>设备状态</h3><div>" + "".join(
            f"<span class='part {cls}' title='{escape(detail)}'>{_MARK[cls]} {escape(name)}</span>"
            for name, cls, detail in health_chips(collect(self.health), self.node)) + "</div></section>"

    def _others(self, data: BoardData) -> str:
        items = "".join(
            f"<span class=other>{_order_tags(o.drill, o.major)}{escape(o.code)} {escape(o.incident_ref)} "
            + " ".join(f"{STATE_WORD.get(k, k)}{n}"
                       for k, n in sorted(o.counts.items(), key=lambda kv: _STATE_RANK.get(kv[0], 9)))
            + "</span>" for o in data.others)
        return f"<footer><b>其他指令 {len(data.others)}</b>{items or ' 无'}</footer>"

    def _wrap(self, inner: str) -> str:
        # Drill mode: the banner, a yellow frame round the whole wall and the title, so that a wall
        # showing the emulators is never read as the real county.
        title = "演练 DRILL · 一呼百应 指挥大厅" if self.drill else "一呼百应 指挥大厅"
        return ("<!doctype html><html lang=zh-CN><head><meta charset=utf-8>"
                f"<noscript><meta http-equiv=refresh content={self.refresh_s}></noscript>"
                f"<title>{title}</title><style>{CSS}</style></head>"
                f"<body{' class=drillmode' if self.drill else ''}>{inner}"
                f"<script>{SCRIPT}</script></body></html>")


# The parts the wall always shows (each modem, the AMI link); any other part only when it is down.
_WALL_NAME = {"ami": "AMI", "sms": "短信", "database": "数据库", "fastagi": "语音应答", "webhooks": "Webhook"}
_MARK = {"ok": "●", "warn": "▲", "bad": "✖", "off": "○"}


def health_chips(parts: list[PartHealth], node: str) -> list[tuple[str, str, str]]:
    """(name, ok|warn|bad|off, detail) per chip, from what /health reports (gateway/health.py):
    the node as a whole (degraded: a modem of several is down), every modem, the AMI link, and any
    other part that is down."""
    status, _ = overall(parts)
    node_cls = {"ok": "ok", "degraded": "warn"}.get(status, "bad")
    chips = [(node or "本节点", node_cls, "; ".join(f"{p.name}: {p.detail}" for p in parts if p.enabled))]
    modems = 0
    for p in parts:
        cls = "off" if not p.enabled else ("ok" if p.ok else "bad")
        if p.name.startswith("modem "):
            modems += 1
            chips.append((f"短信猫{modems}", cls, f"{p.name}: {p.detail}"))
        elif p.name == "ami" or cls == "bad":
            chips.append((_WALL_NAME.get(p.name, p.name), cls, f"{p.name}: {p.detail}"))
    return chips


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _quality(lines: list[HotlineLine]) -> str:
    """Per line, lines as columns (the wall's side column has no room for two more): today's valid
    rate (valid calls of all calls) and the share of calls from flagged numbers."""
    if not lines:
        return ""
    return ("<table class=quality><tr><th></th>" + "".join(f"<th>{escape(x.line)}</th>" for x in lines) + "</tr>"
            "<tr><th>有效率</th>" + "".join(f"<td>{_pct(x.valid_rate)}</td>" for x in lines) + "</tr>"
            "<tr><th>标记占比</th>" + "".join(f"<td class='{'warn' if x.flagged_share else ''}'>{_pct(x.flagged_share)}"
                                          "</td>" for x in lines) + "</tr></table>")


FLAG_WORD = {"repeat": "重复来电", "often_invalid": "多次无效"}


def ringing_strip(ringing: list[tuple], full_numbers: bool, shown: int = 3) -> str:
    """Calls ringing now whose caller is flagged: what the call-taker should know before answering.
    The flag never delays the call (it is only shown); unflagged callers are not listed."""
    rows = []
    for call, h in ringing:
        if not h or h["withheld"] or not (h["flags"] or h["nuisance"]):
            continue
        number = call.caller if full_numbers else mask_number(call.caller)
        flags = " ".join(FLAG_WORD.get(f, f) for f in h["flags"])
        nuisance = f" 骚扰名单：{escape(h['nuisance']['reason'])}" if h["nuisance"] else ""
        m = h["marks"]
        rows.append(f"<li class=flagged data-call='{escape(call.call_id)}' title='24h {h['calls_24h']} · 30天 "
                    f"{h['calls_30d']} · 有效 {m['valid']} / 无效 {m['invalid']}'>{escape(call.line)} "
                    f"{escape(number or '')} {flags}{nuisance}</li>")
    if not rows:
        return ""
    return (f"<section class=ringing><h3>来电提示 {len(rows)}</h3><ul>" + "".join(rows[:shown]) + "</ul></section>")


def _warning(full_text: str | None) -> str:
    """The CAP warning the order in focus was made from, in full (clamped to a few lines on the wall)."""
    if not full_text:
        return ""
    return f"<section class=warning><h3>预警全文</h3><p>{escape(full_text)}</p></section>"


def _proposals(proposals: list[dict], shown: int = 2) -> str:
    """CAP proposals a person must confirm (`yihu order confirm ID`)."""
    if not proposals:
        return ""
    rows = "".join(f"<li data-proposal='{p['id']}' title='{escape(p['request']['text'])}'>#{p['id']} "
                   f"{escape(p['request']['target'])} {escape(p['request']['text'])}</li>" for p in proposals[:shown])
    return f"<section class=proposals><h3>待确认指令 {len(proposals)}</h3><ul>{rows}</ul></section>"


def _order_tags(drill: bool, major: bool) -> str:
    """演练 for a drill order (even on live hardware), 重大 for a major incident."""
    return (("<span class=drilltag>演练</span>" if drill else "")
            + ("<span class=majortag>重大</span>" if major else ""))


def _role(answered_by: str) -> str:
    """"李四 (deputy)" -> "·副": the deputy answered (the commander is the rule; names are in the summary)."""
    return "·副" if answered_by.rpartition(" (")[2].rstrip(")") == "deputy" else ""


_STATE_RANK = {s: i for i, s in enumerate(("queued", "sent", "delivered", "unreachable", "declined", "received",
                                           "assembled", "arrived", "finished"))}

CSS = (
    "*{box-sizing:border-box}html,body{margin:0;height:100%;overflow:hidden}"
    f"body{{background:#0b0f14;color:#f2f2f2;font-family:{FONT_STACK};font-size:24px;line-height:1.15}}"
    "#board{display:grid;grid-template-columns:1fr 360px;grid-template-rows:96px 1fr 48px;gap:8px;"
    "padding:8px;height:100vh;width:100vw}"
    "header{grid-column:1/3;display:flex;align-items:center;gap:16px;background:#18202b;padding:4px 12px;"
    "overflow:hidden}"
    ".drill{background:#ffd600;color:#000;font-size:48px;font-weight:900;padding:4px 20px;letter-spacing:.2em}"
    ".focus{flex:1;min-width:0}.focus .line1,.focus .line2{white-space:nowrap;overflow:hidden;"
    "text-overflow:ellipsis}.focus .line1{font-size:32px}.focus .text{margin-left:16px;color:#c8d0da}"
    ".clock{font-size:44px;font-weight:bold}"
    ".count{display:inline-block;margin-right:10px;padding:0 8px;border-radius:4px}"
    ".count.flag{background:#ffd600;color:#000;font-weight:bold}"
    "main{display:flex;flex-direction:column;gap:8px;min-height:0}"
    ".group{display:flex;gap:6px;min-height:0}"
    ".group h2{writing-mode:vertical-rl;margin:0;font-size:24px;background:#18202b;padding:6px 4px;"
    "text-align:center}.group h2 small{font-size:24px;color:#9aa}"
    f".grid{{flex:1;display:grid;grid-template-columns:repeat({COLUMNS},1fr);gap:6px;min-height:0}}"
    ".tile{border-radius:6px;padding:1px 7px;overflow:hidden;border:4px solid transparent;display:flex;"
    "flex-direction:column;justify-content:center;min-width:0}"
    ".tile div{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;line-height:1.1;flex-shrink:0}"
    ".tile .name{font-size:26px;font-weight:bold}.tile .state{font-size:34px;font-weight:900;line-height:1.35}"
    ".tile .meta,.tile .note{font-size:24px}"
    ".s-standby{background:#1c232c;color:#7d8894}.s-queued{background:#4e342e}.s-sent{background:#37474f}.s-delivered{background:#455a64}"
    ".s-received{background:#1565c0}.s-assembled{background:#00838f}.s-arrived{background:#2e7d32}"
    ".s-finished{background:#1b5e20}.s-declined{background:#6a1b9a}.s-unreachable{background:#b71c1c}"
    ".tile.silent,.tile.late{background:#c62828;border-color:#ffd600}"
    ".tile.silent .note,.tile.late .note{color:#ffd600;font-weight:bold}"
    "aside{width:360px;display:flex;flex-direction:column;gap:8px;min-height:0;overflow:hidden}"
    "aside section{background:#18202b;padding:6px 10px}aside h3{margin:0 0 4px;font-size:26px}"
    "aside ul{margin:0;padding:0;list-style:none}aside li{white-space:nowrap;overflow:hidden;"
    "text-overflow:ellipsis}"
    ".attention{flex:1;min-height:0;overflow:hidden}.attention li.flagged{color:#ffd600}"
    ".hotline table{border-collapse:collapse;width:100%}.hotline th,.hotline td{padding:0 2px;text-align:center}"
    ".hotline td.warn{color:#ffd600;font-weight:bold}.callbacks{color:#c8d0da}"
    ".health div{display:flex;flex-wrap:wrap;gap:4px 12px}.part.ok{color:#66bb6a}"
    ".part.bad{color:#fff;background:#c62828;padding:0 6px}.part.warn{color:#ffd600}.part.off{color:#7d8894}"
    ".drilltag{background:#ffd600;color:#000;font-weight:900;padding:0 8px;margin-right:8px}"
    ".majortag{background:#c62828;color:#fff;font-weight:900;padding:0 8px;margin-right:8px}"
    ".warning p{margin:0;display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden}"
    ".warning,.proposals,.ringing{flex-shrink:0}.proposals li,.ringing li{color:#ffd600}"
    ".ringing li{white-space:normal}"   # every flag read whole: the call-taker answers next
    ".timeline{flex-shrink:0}.timeline li{color:#c8d0da}"
    "body.drillmode #board{box-shadow:inset 0 0 0 6px #ffd600}.ok{color:#66bb6a}.bad{color:#ef5350}"
    "footer{grid-column:1/3;background:#18202b;padding:6px 12px;white-space:nowrap;overflow:hidden;"
    "text-overflow:ellipsis}.other{margin-left:24px}"
)
