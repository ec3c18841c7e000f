"""The reply grammar: what team commanders type back on their phones.

A pure function, no I/O: `parse_reply(text)` gives a `Reply` (order code if typed, status,
report text) or a `Refusal` naming why it could not be read.  The shape is

    [指令|编号|第] [CODE[号]] STATUS [REPORT]

with CODE four digits (0427), STATUS a keypad digit (1 received, 2 arrived, 3 finished,
4 assembled) or a word people really use (收到, 已到, 到场, 处置完毕, 集结完毕, OK, ...), and
whatever follows the status kept as the team's report.  Full-width characters, Chinese
punctuation and stray spaces are tolerated.

Deliberately strict about the status: it must come first (after the code).  A status found
somewhere in free text ("预计20分钟到达") is NOT taken: a false "arrived" would stop the chase
of a team that is still on the road, while an unread reply only costs the sender a help SMS.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

RECEIVED = "received"
ASSEMBLED = "assembled"
ARRIVED = "arrived"
FINISHED = "finished"
DECLINED = "declined"

CODE_LENGTH = 4

# The digits the IVR uses too: one table for both channels.
DIGIT_STATUS = {"1": RECEIVED, "2": ARRIVED, "3": FINISHED, "4": ASSEMBLED}
STATUS_DIGIT = {v: k for k, v in DIGIT_STATUS.items()}

# Chinese names used in confirmations (已记录 0427 到达 10:32).
STATUS_WORD = {RECEIVED: "收到", ASSEMBLED: "集结完毕", ARRIVED: "到达", FINISHED: "处置完毕",
               DECLINED: "无法执行"}

_WORDS = {
    RECEIVED: ["已收到", "收到了", "收到", "已收", "收悉", "明白", "知道了", "知道", "了解", "好的", "好",
               "确认", "已阅", "OKAY", "OK", "YES", "Y"],
    ASSEMBLED: ["集结完毕", "集结完成", "已集结", "集合完毕", "集合完成", "已集合", "集结"],
    ARRIVED: ["已到达", "到达", "已到场", "到场", "已到位", "到位", "已抵达", "抵达", "已到", "到了",
              "到现场"],
    FINISHED: ["处置完毕", "处理完毕", "处置完成", "处理完成", "处置结束", "处理结束", "已处置", "已处理",
               "已完成", "完成", "完毕", "已结束", "结束", "已办结", "办结"],
    DECLINED: ["无法前往", "无法出动", "无法到达", "无法执行", "不能前往", "不能出动", "拒绝"],
}
# Longest first, so that 集结完毕 wins over 完毕 and 已收到 over 收到.
_KEYWORDS = sorted(((w, s) for s, ws in _WORDS.items() for w in ws), key=lambda p: -len(p[0]))

# Separators people put between code, status and report: ASCII and Chinese punctuation.
_SEP = " \t\r\n,.;:!?#*-_/\\|()[]{}<>\"'`~+=，。、；：！？“”‘’（）【】《》〈〉「」『』·—…～"
_PREFIXES = ("指令编号", "指令", "编号", "回复", "第")
_FILLERS = ("我们", "我队", "本队", "我部")   # "我们已到达": the subject people add, nothing more


@dataclass(frozen=True)
class Reply:
    status: str
    code: str | None = None
    report: str = ""


@dataclass(frozen=True)
class Refusal:
    reason: str     # empty / unrecognised / conflict / bad_code


def fold(text: str) -> str:
    """Full-width ASCII (０-９, Ａ-Ｚ, ，...) and the ideographic space to ASCII, one char for one.

    One for one, so that positions found in the folded text cut the report out of the text as
    the sender wrote it (their punctuation kept).
    """
    return "".join(chr(ord(c) - 0xFEE0) if "\uff01" <= c <= "\uff5e" else (" " if c == "\u3000" else c)
                   for c in unicodedata.normalize("NFC", text or ""))


def _skip_sep(t: str, i: int) -> int:
    while i < len(t) and t[i] in _SEP:
        i += 1
    return i


def _match_keyword(t: str, i: int) -> tuple[str, int] | None:
    up = t[i:i + 8].upper()
    extra = 0
    if up.startswith("已经"):       # 已经到达 reads as 已到达
        up, extra = "已" + up[2:], 1
    for word, status in _KEYWORDS:
        if up.startswith(word):
            end = i + len(word) + (extra if word.startswith("已") else 0)
            # Latin words must end at a non-letter: "Y" is not the start of "YUAN".
            if word.isascii() and end < len(t) and t[end].isascii() and t[end].isalpha():
                continue
            return status, end
    return None


def parse_reply(text: str) -> Reply | Refusal:
    original = unicodedata.normalize("NFC", text or "")
    t = fold(original)
    if not t.strip():
        return Refusal("empty")
    i = _skip_sep(t, 0)
    for p in _PREFIXES:
        if t.startswith(p, i):
            i = _skip_sep(t, i + len(p))
            break
    code = None
    status = None
    m = re.match(r"\d+", t[i:])
    if m:
        run = m.group(0)
        if len(run) == CODE_LENGTH:
            code = run
        elif len(run) == CODE_LENGTH + 1 and run[-1] in DIGIT_STATUS:
            code, status = run[:-1], DIGIT_STATUS[run[-1]]     # "04271": typed without a space
        elif len(run) == 1 and run in DIGIT_STATUS:
            status = DIGIT_STATUS[run]
        else:
            return Refusal("bad_code" if len(run) > 1 else "unrecognised")
        i += len(run)
        if code and t.startswith("号", i):
            i += 1
        i = _skip_sep(t, i)
    if status is None and code is not None:
        m = re.match(r"\d+", t[i:])
        if m:
            if len(m.group(0)) != 1 or m.group(0) not in DIGIT_STATUS:
                return Refusal("unrecognised")
            status = DIGIT_STATUS[m.group(0)]
            i = _skip_sep(t, i + 1)
    for f in _FILLERS:
        if status is None and t.startswith(f, i):
            i += len(f)
            break
    kw = _match_keyword(t, i)
    if status is None:
        if kw is None:
            return Refusal("unrecognised")
        status, i = kw
    elif kw is not None:
        # "1 收到" repeats the status; "1 到达" contradicts it, and we do not guess which one.
        if kw[0] != status:
            return Refusal("conflict")
        i = kw[1]
    i = _skip_sep(t, i)
    report = original[i:].strip(_SEP)
    # "收到 0427": the code typed after the status.
    if code is None and re.fullmatch(r"\d{%d}" % CODE_LENGTH, report):
        code, report = report, ""
    return Reply(status=status, code=code, report=report)
