"""The texts people receive (SMS).  Short: one or two SMS segments where possible."""
from __future__ import annotations

from gateway.escalation.deadlines import LEAVING_CITY, SITUATION, STAGE_WORD
from gateway.orders.grammar import STATUS_WORD

CENTER = "【应急联动中心】"


def order_sms(code: str, incident_ref: str, text: str, onscene: str, rule: str, minutes: int,
              major_every: float = 0) -> str:
    """`major_every`: a major order's situation-report period in minutes (0: not major)."""
    if rule == LEAVING_CITY:
        need, keys = f"{minutes}分钟内集结完毕并出发", "1收到 4集结完毕 2到达 3完毕"
    else:
        need, keys = f"{minutes}分钟内到达", "1收到 2到达 3完毕"
    return (f"{CENTER}指令{code}（{incident_ref}）：{text} 现场指挥：{onscene}。要求{need}。"
            f"请回复：{code} {keys}" + (major_order_tail(code, major_every) if major_every else ""))


def reminder_sms(code: str, stage: str, team_state_word: str, finished_without_report: bool) -> str:
    if stage == SITUATION:
        return f"{CENTER}催报：重大事件指令{code} 未收到贵队现场动态，请立即续报，回复：{code} 续报 现场情况…"
    if finished_without_report:
        return (f"{CENTER}催办：指令{code} 请补全正式反馈单（处置结果、需后续处置、责任人、责任单位、伤亡/损失），"
                f"回复：{code} 处置结果：…；需后续处置：是/否；责任人：…；责任单位：…；伤亡：…")
    return f"{CENTER}催办：指令{code} 未收到贵队{STAGE_WORD[stage]}反馈（当前：{team_state_word}）。请立即回复：{code} 数字"


def supervisor_sms(code: str, stage: str, silent: list[str]) -> str:
    return (f"{CENTER}值班长：指令{code} 以下队伍{STAGE_WORD[stage]}超时未反馈，电话催办无果：" + "、".join(silent))


def supervisor_late_answer_sms(code: str, team: str, status: str, hhmm: str) -> str:
    return f"{CENTER}值班长：指令{code} {team} 已反馈 {STATUS_WORD.get(status, status)} {hhmm}"


def confirmation_sms(code: str, status: str, hhmm: str, ask: str = "") -> str:
    """`ask`: what the team still owes (the next field of the form, the next situation report)."""
    s = f"已记录 {code} {STATUS_WORD.get(status, status)} {hhmm}"
    return f"{s}。{ask}" if ask else s


def major_order_tail(code: str, minutes: float) -> str:
    """Added to a major order's SMS: the teams owe situation reports."""
    return f"【重大事件】到达后每{minutes:g}分钟续报现场动态：{code} 续报 …"


def form_saved_sms(code: str, team: str, filled: list[str], ask: str) -> str:
    got = "、".join(filled) or "无新内容"
    return f"已记录 {code} {team}反馈单：{got}。" + (ask or "反馈单已齐全，谢谢。")


def note_saved_sms(code: str) -> str:
    return f"已记录您对指令{code}的意见，已转调度员。"


def note_needs_code_sms() -> str:
    return "未能确定您回复的是哪条指令，请在回复前加指令编号，如：0427 请加强现场警戒"


def needs_code_sms(codes: list[str]) -> str:
    return f"您有{len(codes)}条未结指令（{'、'.join(codes)}），请在回复前加指令编号，如：{codes[0]} 2"


def help_sms() -> str:
    return "未能识别回复。格式：指令编号 数字，如 0427 1（1收到 2到达 3完毕 4集结完毕）"


def not_your_order_sms(code: str | None, open_codes: list[str]) -> str:
    if code:
        s = f"指令{code} 不是发给贵队的或已结束。"
    else:
        s = "贵队当前没有未结指令。"
    if open_codes:
        s += f"贵队未结指令：{'、'.join(open_codes)}"
    return s


def not_applicable_sms(code: str) -> str:
    return f"指令{code} 为本地到达指令，无需集结。请回复：{code} 1收到 2到达 3完毕"
