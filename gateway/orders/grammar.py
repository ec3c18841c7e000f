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
# A situation report (现场动态) on a major order: kept on the order's timeline, never a state.
SITUATION = "situation"

CODE_LENGTH = 4

# The digits the IVR uses too: one table for both channels.
DIGIT_STATUS = {"1": RECEIVED, "2": ARRIVED, "3": FINISHED, "4": ASSEMBLED}
STATUS_DIGIT = {v: k for k, v in DIGIT_STATUS.items()}

# Chinese names used in confirmations (已记录 0427 到达 10:32).
STATUS_WORD = {RECEIVED: "收到", ASSEMBLED: "集结完毕", ARRIVED: "到达", FINISHED: "处置完毕",
               DECLINED: "无法执行", SITUATION: "现场动态"}

_WORDS = {
    RECEIVED: ["已收到", "收到了", "收到", "已收", "收悉", "明白", "知道了", "知道", "了解", "好的", "好",
               "确认", "已阅", "OKAY", "OK", "YES", "Y"],
    ASSEMBLED: ["集结完毕", "集结完成", "已集结", "集合完毕", "集合完成", "已集合", "集结"],
    ARRIVED: ["已到达", "到达", "已到场", "到场", "已到位", "到位", "已抵达", "抵达", "已到", "到了",
              "到现场"],
    FINISHED: ["处置完毕", "处理完毕", "处置完成", "处理完成", "处置结束", "处理结束", "处置好", "处理好",
               "处置完", "处理完", "已处置", "已处理",
               "已完成", "完成", "完毕", "已结束", "结束", "已办结", "办结"],
    DECLINED: ["无法前往", "无法出动", "无法到达", "无法执行", "不能前往", "不能出动", "拒绝"],
    # The markers people put before a running report: the rest of the text is the report.
    SITUATION: ["现场动态", "现场情况", "现场进展", "最新进展", "最新情况", "续报", "动态", "进展", "情况报告"],
}
# 已 + the word + a completion suffix (已处置完毕, 已集结完成) is one word: the suffix is never a report.
_WORDS[FINISHED] += ["已" + w + suf for w in ("处置", "处理") for suf in ("完毕", "完成", "结束")]
_WORDS[ASSEMBLED] += ["已" + w + suf for w in ("集结", "集合") for suf in ("完毕", "完成")]
# Longest first, so that 集结完毕 wins over 完毕 and 已收到 over 收到.
_KEYWORDS = sorted(((w, s) for s, ws in _WORDS.items() for w in ws), key=lambda p: -len(p[0]))

# Separators people put between code, status and report: ASCII and Chinese punctuation.
_SEP = " \u3000\t\r\n,.;:!?#*-_/\\|()[]{}<>\"'`~+=，。、；：！？“”‘’（）【】《》〈〉「」『』·—…～"
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
    i = _skip_said(t, i, status)
    found = _codes_in(t, i)
    if len({c for c, _a, _b in found} | ({code} if code else set())) > 1:
        return Refusal("conflict")          # two different codes: ask, do not guess which
    if found:
        code = found[0][0]
    rest = original[i:]
    for _c, a, b in reversed(found):      # the code (and its 指令/编号/号) is not part of the report
        rest = rest[:a - i] + " " + rest[b - i:]
    rest = _EMPTY_PAIR.sub(" ", rest)
    folded = fold(rest)
    if _skip_said(folded, 0, status) >= len(folded):
        rest = ""                           # nothing but words already read (指令, 了, 到达到达...)
    return Reply(status=status, code=code, report=_trim_report(rest))


# --- what follows the status -------------------------------------------------------------------

_OPENERS = "([{<（【《〈「『“‘"
_CLOSERS = ")]}>）】》〉」』”’"
_QUOTES = "\"'`"
# Said already once the status is read: a word for the order itself, particles, and (after
# "finished"/"assembled") a completion suffix: 已处置完毕, 已处理好了, 集结完成了.
_FILLER_WORDS = ("指令", "命令", "任务", "通知")
_PARTICLES = ("了", "啦", "啊", "呀", "哈", "哦", "喔", "呢", "吧", "的", "嗯", "咯", "喽")
_COMPLETION = ("完毕", "完成", "结束", "好了", "好", "完了", "完")
_EMPTY_PAIR = re.compile(r"[(\[{（【《〈「『][\s]*[)\]}）】》〉」』]")
_CODE_IN_TEXT = re.compile(r"(?:(指令编号|指令|编号|第)[ \t:：#]*)?(\d+)(号)?")


def _said_token(t: str, j: int, status: str) -> int | None:
    """End of a word at j that adds nothing to `status`, or None."""
    kw = _match_keyword(t, j)
    if kw is not None and kw[0] == status:
        return kw[1]                        # the status again: 到达到达, 收到 好的
    if t.startswith(STATUS_DIGIT.get(status, "\0"), j) and not t[j + 1:j + 2].isdigit():
        return j + 1
    words = _FILLER_WORDS + _PARTICLES + (_COMPLETION if status in (FINISHED, ASSEMBLED) else ())
    for w in sorted(words, key=len, reverse=True):
        if t.startswith(w, j):
            return j + len(w)
    return None


def _skip_said(t: str, i: int, status: str) -> int:
    """Skip separators and words that add nothing, but only whole words: a run of them must end
    at a separator or the end ("已处理好" is all said; "好几处房屋倒塌" is a report)."""
    best = j = i
    while j < len(t):
        if t[j] in _SEP and t[j] not in _OPENERS and t[j] not in _QUOTES:
            j += 1
            best = j
            continue
        end = _said_token(t, j, status)
        if end is None:
            break
        j = end
        if j >= len(t) or t[j] in _SEP:
            best = j
    return best


def _codes_in(t: str, i: int) -> list[tuple[str, int, int]]:
    """Order codes typed after the status (到达现场 0427, 已到达 现场 编号0427): four digits
    standing alone (after a separator, or after 指令/编号/第, or closing the text) and followed
    by nothing but a separator, 号 or the end.  "现场1200人" is not one.  (code, start, end)."""
    out = []
    for m in _CODE_IN_TEXT.finditer(t, i):
        digits, prefix = m.group(2), m.group(1)
        a, b = m.start(), m.end()
        if len(digits) != CODE_LENGTH:
            continue
        before = t[a - 1] if a > i else ""
        after = t[b] if b < len(t) else ""
        if after and after not in _SEP:
            continue
        if not prefix and before and before not in _SEP and (before.isascii() or b < len(t)):
            continue                        # glued to a word: a number in the report, unless it ends the text
        out.append((digits, a, b))
    return out


def _trim_report(s: str) -> str:
    """The report as written, without the separators around it, but with its brackets and
    quotes: a closer is dropped only when its opener is not in the report (the status was
    quoted: “收到”), an opener only when its closer is not."""
    plain = "".join(c for c in _SEP if c not in _OPENERS + _CLOSERS + _QUOTES)
    while True:
        s = s.strip(plain)
        if not s:
            return s
        first, last = s[0], s[-1]
        if last in _CLOSERS and _OPENERS[_CLOSERS.index(last)] not in s[:-1]:
            s = s[:-1]
        elif first in _OPENERS and _CLOSERS[_OPENERS.index(first)] not in s[1:]:
            s = s[1:]
        elif last in _QUOTES and s.count(last) % 2:
            s = s[:-1]
        elif first in _QUOTES and s.count(first) % 2:
            s = s[1:]
        else:
            return s
