"""The formal feedback form (正式反馈单): its fields, how people write them in an SMS, when it is complete.

A pure module.  People write the fields with a label, in any order, one or several per message:

    责任人：张三；责任单位：城关镇
    责任人张三 单位城关镇
    处置结果：塌方已清理，道路通行。需后续处置：是。伤亡/损失：无
    无需后续处置

Text before the first label is the result (处置结果) when the message finishes the order
("3 处置完毕 塌方已清理"), or the field the center asked for when it asked for one ("张三").
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from gateway.orders.grammar import fold

RESULT, FOLLOW_UP, PERSON, UNIT, CASUALTIES, REMARKS = \
    "result", "follow_up", "responsible_person", "responsible_unit", "casualties", "remarks"
FIELDS = (RESULT, FOLLOW_UP, PERSON, UNIT, CASUALTIES, REMARKS)
FIELD_WORD = {RESULT: "处置结果", FOLLOW_UP: "需后续处置", PERSON: "责任人", UNIT: "责任单位",
              CASUALTIES: "伤亡/损失", REMARKS: "备注"}
LIMITS = {PERSON: 100, UNIT: 200, RESULT: 2000, CASUALTIES: 2000, REMARKS: 2000}

_LABELS = {
    RESULT: ["处置结果", "处理结果", "处置情况", "处理情况", "结果"],
    FOLLOW_UP: ["是否需后续处置", "是否需要后续处置", "需要后续处置", "需后续处置", "需后续处理", "后续处置",
                "需后续跟进", "后续跟进", "后续工作", "需后续", "后续"],
    PERSON: ["责任人", "负责人"],
    UNIT: ["责任单位", "负责单位", "单位"],
    CASUALTIES: ["伤亡及损失", "伤亡和损失", "伤亡/损失", "伤亡损失", "伤亡情况", "人员伤亡", "财产损失",
                 "损失情况", "伤亡", "损失"],
    REMARKS: ["备注", "其他", "说明"],
}
_BY_LENGTH = sorted(((w, f) for f, ws in _LABELS.items() for w in ws), key=lambda p: -len(p[0]))
_NO_FOLLOW_UP = re.compile(r"(无需|不需要|不需|无)后续(处置|处理|工作|跟进)?")
_YES = ("需要", "是", "要", "有", "需", "YES", "Y")
_NO = ("不需要", "不需", "无需", "不用", "没有", "否", "无", "NO", "N")
_SEP = " \u3000\t\r\n,.;:!?，。、；：！？"
_SHORT_STOP = re.compile(r"[\s,;，；。、]")     # a name or a unit ends at the first separator


@dataclass
class Parsed:
    values: dict = field(default_factory=dict)      # field -> text (follow_up: bool)
    bare: str = ""                                   # text before the first label

    def __bool__(self):
        return bool(self.values or self.bare)


def fold_text(text: str) -> str:
    """Full-width folded, one character for one (positions carry over to the text as written)."""
    return fold(unicodedata.normalize("NFC", text or ""))


def _label_at(t: str, i: int) -> tuple[str, str, int] | None:
    for word, name in _BY_LENGTH:
        if t.startswith(word, i):
            # A short label counts only where a field can start: "单位" glued to a word is text.
            if len(word) < 3 and i > 0 and t[i - 1] not in _SEP:
                return None
            return name, word, i + len(word)
    return None


def _yes_no(value: str) -> tuple[bool | None, str]:
    up = value.upper()
    for words, answer in ((_NO, False), (_YES, True)):
        for w in sorted(words, key=len, reverse=True):
            if up.startswith(w):
                return answer, value[len(w):].strip(_SEP)
    return None, value


def parse_fields(text: str) -> Parsed:
    """The labelled fields of one message, values as written (trimmed)."""
    original = unicodedata.normalize("NFC", text or "")
    t = fold(original)          # one for one: positions in t cut the values out of the original
    out = Parsed()
    m = _NO_FOLLOW_UP.search(t)
    if m:
        out.values[FOLLOW_UP] = False
        blank = " " * (m.end() - m.start())
        t = t[:m.start()] + blank + t[m.end():]
        original = original[:m.start()] + blank + original[m.end():]
    spans = []
    i = 0
    while i < len(t):
        hit = _label_at(t, i)
        if hit:
            spans.append((i, *hit))
            i = hit[2]
        else:
            i += 1
    out.bare = original[:spans[0][0] if spans else len(t)].strip(_SEP)
    for n, (start, name, word, vstart) in enumerate(spans):
        end = spans[n + 1][0] if n + 1 < len(spans) else len(t)
        value = original[vstart:end].strip(_SEP)
        if value.startswith(("为", "是")) and name in (PERSON, UNIT):
            value = value[1:].strip(_SEP)
        if name in (PERSON, UNIT):
            value = _SHORT_STOP.split(value, 1)[0]
        if name == FOLLOW_UP:
            answer, rest = _yes_no(value)
            if answer is None and not value:
                continue
            out.values[FOLLOW_UP] = True if answer is None else answer
            if rest:                                 # 后续：清淤 - what the follow-up is
                _add(out.values, REMARKS, f"后续：{rest}")
            continue
        if value and name == CASUALTIES and word in ("损失", "财产损失", "人员伤亡"):
            value = f"{word}：{value}"           # 伤亡：无，损失约2万元 - both halves kept, each named
        if value:
            _add(out.values, name, value)
    return out


def _add(values: dict, name: str, value: str) -> None:
    values[name] = f"{values[name]}；{value}" if name in values else value


def answer_for(asked: str, text: str) -> dict:
    """A message without labels, answering the field the center asked for."""
    value = unicodedata.normalize("NFC", text or "").strip(_SEP)
    if not value:
        return {}
    if asked == FOLLOW_UP:
        answer, rest = _yes_no(value)
        if answer is None:
            return {}
        return {FOLLOW_UP: answer, **({REMARKS: f"后续：{rest}"} if rest else {})}
    return {asked: value}


def missing(form: dict) -> list[str]:
    """The fields still needed, in the order they are asked for.  Remarks are never required; the
    responsible person and unit are required where follow-up is needed (the seed: 双反馈)."""
    need = [f for f in (RESULT, FOLLOW_UP) if form.get(f) in (None, "")]
    if form.get(FOLLOW_UP):
        need += [f for f in (PERSON, UNIT) if not form.get(f)]
    if not form.get(CASUALTIES):
        need.append(CASUALTIES)
    return need


def merge(form: dict, changes: dict) -> dict:
    """The form with `changes` applied (a value of None clears a field); texts cut to their column."""
    out = dict(form)
    for k, v in changes.items():
        if k not in FIELDS:
            raise KeyError(k)
        out[k] = v[:LIMITS[k]] if isinstance(v, str) else v
    return out


def ask_text(code: str, name: str) -> str:
    """The SMS asking for one missing field."""
    hint = {FOLLOW_UP: "是/否", RESULT: "简述处置情况", PERSON: "姓名", UNIT: "单位名称",
            CASUALTIES: "伤亡及损失情况，无则回复“无”"}[name]
    return f"请补充反馈单【{FIELD_WORD[name]}】，回复：{code} {FIELD_WORD[name]}：{hint}"
