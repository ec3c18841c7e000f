"""The SMS the county's leaders receive.  Short: one or two segments where possible."""
from __future__ import annotations

from gateway.escalation.deadlines import STAGE_WORD
from gateway.orders.messages import CENTER

DIGEST_CHARS = 280          # a digest longer than this is cut, saying how many more reports there are


def created(code: str, ref: str, text: str, teams: list[str], onscene: str) -> str:
    return (f"{CENTER}重大事件 指令{code}（{ref}）：{text} 已调{len(teams)}支队伍（{'、'.join(teams[:6])}"
            f"{'等' if len(teams) > 6 else ''}）。现场指挥：{onscene}。回复本短信请以{code}开头。")


def first_arrived(code: str, team: str, hhmm: str) -> str:
    return f"{CENTER}重大事件 指令{code}：首支队伍{team} {hhmm}到达现场。"


def all_arrived(code: str, n: int, last_team: str, hhmm: str) -> str:
    return f"{CENTER}重大事件 指令{code}：{n}支队伍已全部到达现场（最后到达：{last_team} {hhmm}）。"


def missed(code: str, team: str, stage: str, due_hhmm: str) -> str:
    return f"{CENTER}重大事件 指令{code}：{team}{STAGE_WORD.get(stage, stage)}超时未反馈（时限{due_hhmm}），正在催办。"


def finished(code: str, n: int, hhmm: str, closed: bool) -> str:
    how = "已结束" if closed else f"{n}支队伍均已处置完毕"
    return f"{CENTER}重大事件 指令{code}：{how}（{hhmm}）。"


def _cut(head: str, items: list[str], empty: str) -> str:
    if not items:
        return head + empty
    out, used = head, 0
    for item in items:
        if len(out) + len(item) > DIGEST_CHARS:
            return out + f"……另{len(items) - used}条详见调度台。"
        out += item
        used += 1
    return out


def digest(code: str, span: str, reports: list[tuple[str, str, str]], states: str) -> str:
    """reports: (team, HH:MM, text) in time order; states: the teams by state."""
    return _cut(f"{CENTER}重大事件 指令{code} 现场动态汇总（{span}）{states}：",
                [f"{team} {hhmm} {text}；" for team, hhmm, text in reports], "本时段无新动态。")


def daily(day: str, orders: list[tuple[str, str, str]]) -> str:
    """orders: (code, incident ref, team states) of the ordinary orders of the past day."""
    return _cut(f"{CENTER}一般指令日报（{day}）共{len(orders)}条：",
                [f"{code} {ref} {states}；" for code, ref, states in orders], "无。")
