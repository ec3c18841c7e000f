"""The recorded prompts the IVR plays: name -> Asterisk sound file + the Chinese it must say.

This is the one list of prompts: the flows play them by name, `yihu prompts build` renders each
text to SHIPPED_DIR (committed), and the tests check the two agree.  Sound names are relative to
Asterisk's sounds directory (no extension: Asterisk picks the best format installed).  See
README.md here for rebuilding them and replacing them with studio recordings.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The generated Mandarin recordings, committed (see README.md): SHIPPED_DIR/yihu/<name>.wav,
# laid out as under Asterisk's sounds directory.
SHIPPED_DIR = Path(__file__).resolve().parent / "sounds"


@dataclass(frozen=True)
class Prompt:
    sound: str      # e.g. "yihu/order-intro"
    text: str       # what the recording says


PROMPTS: dict[str, Prompt] = {p_name: Prompt(f"yihu/{p_name.replace('_', '-')}", text) for p_name, text in {
    # order call
    "order_intro": "这里是县应急联动指挥中心，现在下达指令。指令编号",
    "order_menu": "收到指令请按1，到达现场请按2，处置完毕请按3，重听请按0。",
    "order_menu_assembled": "收到指令请按1，集结完毕出发请按4，到达现场请按2，处置完毕请按3，重听请按0。",
    "recorded": "已记录",
    "for_order": "指令编号",
    "status_received": "收到指令",
    "status_assembled": "集结完毕",
    "status_arrived": "到达现场",
    "status_finished": "处置完毕",
    "status_situation": "现场动态",
    "record_situation": "请在提示音后报告现场情况，说完请按井号键。",
    "situation_hint": "这是重大事件指令，到达现场后请随时报告现场动态，报告现场动态请按5。",
    "not_recorded": "未能记录您的反馈，请用短信回复或致电指挥中心。",
    "system_error": "系统暂时无法记录按键，请用短信回复指令编号和状态。",
    "invalid_key": "按键无效。",
    "no_input_goodbye": "没有收到您的按键，指挥中心会再与您联系。再见。",
    "goodbye": "再见。",
    # feedback line
    "feedback_welcome": "这里是县应急联动指挥中心反馈专线。",
    "unknown_caller": "您的号码没有在应急队伍名册中登记，无法受理按键反馈，请联系指挥中心值班员。",
    "no_open_orders": "您的队伍目前没有需要反馈的指令。",
    "enter_order_code": "您有多条指令，请输入指令编号，以井号键结束。",
    "wrong_order_code": "指令编号有误。",
    "enter_pin": "请输入您的四位反馈密码。",
    "wrong_pin": "密码错误。",
    "pin_refused": "密码两次错误，无法受理按键反馈，请联系指挥中心值班员。",
    # hotlines (the merged 110 / 119 / 122 center)
    "hotline_110": "您好，这里是幺幺零报警服务台，正在为您接通，请不要挂机。",
    "hotline_119": "您好，这里是幺幺九火警服务台，正在为您接通，请不要挂机。",
    "hotline_122": "您好，这里是幺二二交通事故报警台，正在为您接通，请不要挂机。",
    "hotline_overflow": "现在接警员全部忙碌，请不要挂机，您的电话会按顺序尽快接通。",
}.items()}

# The keypad digit of each status: the same digits as in SMS replies (4 = assembled, for teams
# under the leaving-the-city rule).
STATUS_BY_DIGIT = {"1": "received", "2": "arrived", "3": "finished", "4": "assembled"}
STATUS_PROMPT = {"received": "status_received", "arrived": "status_arrived",
                 "finished": "status_finished", "assembled": "status_assembled"}


# Mandarin digits for Asterisk's SAY DIGITS (order codes) when the channel language is zh:
# shipped as zh/digits/<d>.  1 is read 幺 (yāo), as dispatchers read codes, so it is never
# heard as 七.
DIGITS: dict[str, Prompt] = {d: Prompt(f"digits/{d}", t) for d, t in zip("0123456789", "零幺二三四五六七八九")}


def sound(name: str) -> str:
    return PROMPTS[name].sound


def shipped_files() -> dict[str, tuple[str, str]]:
    """Every file of the shipped set, relative to SHIPPED_DIR -> (sound name, text)."""
    files = {f"{p.sound}.wav": (p.sound, p.text) for p in PROMPTS.values()}
    files.update({f"zh/{p.sound}.wav": (p.sound, p.text) for p in DIGITS.values()})
    return files
