"""The texts people receive (SMS).  Short: one or two SMS segments where possible."""
from __future__ import annotations

from gateway.escalation.deadlines import LEAVING_CITY, STAGE_WORD
from gateway.orders.grammar import STATUS_WORD

CENTER = "【应急联动中心】"


def order_sms(code: str, incident_ref: str, text: str, onscene: str, rule: str, minutes: int) -> str:
    if rule == LEAVING_CITY:
        need, keys = f"{minutes}分钟内集结完毕并出发", "1收到 4集结完毕 2到达 3完毕"
    else:
        need, keys = f"{minutes}分钟内到达", "1收到 2到达 3完毕"
    return (f"{CENTER}指令{code}（{incident_ref}）：{text} 现场指挥：{onscene}。要求{need}。"
            f"请回复：{code} {keys}")


def roster_check_sms(code: str) -> str:
    return f"{CENTER}通讯录核对{code}：请回复 {code} 1 确认本号码可用（接到电话按1亦可）。无需出动。"


def reminder_sms(code: str, stage: str, team_state_word: str, finished_without_report: bool) -> str:
    if finished_without_report:
        return (f"{CENTER}催办：指令{code} 请反馈处置结果（后续工作、责任人及单位），"
                f"回复：{code} 3 后续…责任人…单位…")
    return f"{CENTER}催办：指令{code} 未收到贵队{STAGE_WORD[stage]}反馈（当前：{team_state_word}）。请立即回复：{code} 数字"


def supervisor_sms(code: str, stage: str, silent: list[str]) -> str:
    return (f"{CENTER}值班长：指令{code} 以下队伍{STAGE_WORD[stage]}超时未反馈，电话催办无果：" + "、".join(silent))


def supervisor_late_answer_sms(code: str, team: str, status: str, hhmm: str) -> str:
    return f"{CENTER}值班长：指令{code} {team} 已反馈 {STATUS_WORD.get(status, status)} {hhmm}"


def confirmation_sms(code: str, status: str, hhmm: str, ask_report: bool) -> str:
    s = f"已记录 {code} {STATUS_WORD.get(status, status)} {hhmm}"
    if ask_report:
        s += "。请补充处置结果：后续工作、责任人及单位（回复 " + code + " 3 后续…）"
    return s


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
