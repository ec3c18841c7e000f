"""The four reading faults of issue 9, each as a family of the ways people really type it (not
only the issue's example): a finishing word with a completion suffix, a report's closing bracket
or quote, an order code typed after the status with words between, filler words."""
import itertools

import pytest

from gateway.orders.grammar import ARRIVED, ASSEMBLED, FINISHED, RECEIVED, Refusal, Reply, parse_reply

# --- (a) a completion suffix is part of the finishing word, never the report --------------------

FINISH_WORDS = sorted({p + root + suf for p, root, suf in itertools.product(
    ["", "已", "已经"], ["处置", "处理"], ["完毕", "完成", "结束", "好", "好了", "完了", "完"])} - {"处置", "处理"})
TAILS = ["", "了", "。", "！", " ", "了。", "啦"]


@pytest.mark.parametrize("word", FINISH_WORDS)
@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("code", ["", "0427 ", "0427，"])
def test_a_finishing_word_with_its_suffix_leaves_no_report(word, tail, code):
    assert parse_reply(code + word + tail) == Reply(FINISHED, code[:4] or None, "")


@pytest.mark.parametrize("word", FINISH_WORDS)
@pytest.mark.parametrize("sep", ["，", "。", " ", "：", "；"])
def test_a_finishing_word_with_its_suffix_then_the_real_report(word, sep):
    report = "后续：清理路障；责任人：王五；单位：城关镇"
    assert parse_reply(f"0427 {word}{sep}{report}") == Reply(FINISHED, "0427", report)


@pytest.mark.parametrize("text,report", [
    ("处置完毕 好几处房屋倒塌，已转移", "好几处房屋倒塌，已转移"),     # 好 starting a word is the report
    ("已处理 了解情况后再报", "了解情况后再报"),
    ("已处置完毕 完成清淤，无需后续", "完成清淤，无需后续"),
    ("集结完毕了 18人出发", "18人出发"),
    ("已集结完成", ""),
])
def test_suffix_words_that_begin_a_real_report_are_kept(text, report):
    assert parse_reply(text).report == report


# --- (b) brackets and quotes ----------------------------------------------------------------------

CLOSED = ["（已完成）", "“王五”", "《事故通报》", "【已上报】", "(张三)", '"OK"', "「待定」", "‘李四’", "[附件]",
          "『二次核查』", "〈县水利局〉"]


@pytest.mark.parametrize("part", CLOSED)
@pytest.mark.parametrize("template,report", [
    ("0427 3 后续{p}", "后续{p}"), ("0427 处置完毕 {p}", "{p}"), ("0427 3 责任人{p}，单位：城关镇", "责任人{p}，单位：城关镇"),
    ("0427 到达 现场{p}", "现场{p}"), ("无法出动：{p}", "{p}"), ("已处置完毕。后续{p}。", "后续{p}"),
])
def test_a_report_keeps_its_closing_bracket_or_quote(part, template, report):
    assert parse_reply(template.format(p=part)).report == report.format(p=part)


@pytest.mark.parametrize("text,status", [("“收到”", RECEIVED), ("【收到】", RECEIVED), ('"0427 到达"', ARRIVED),
                                         ("「处置完毕」", FINISHED), ("（集结完毕）", ASSEMBLED)])
def test_a_quoted_status_leaves_no_stray_quote_as_report(text, status):
    assert parse_reply(text) == Reply(status, "0427" if "0427" in text else None, "")


# --- (c) the order code after the status, with words between ------------------------------------

STATUSES = [("到达", ARRIVED), ("已到达", ARRIVED), ("到场", ARRIVED), ("收到", RECEIVED), ("处置完毕", FINISHED),
            ("已处理完毕", FINISHED), ("集结完毕", ASSEMBLED), ("2", ARRIVED)]
CODE_AFTER = [("{s}现场 {c}", "现场"), ("{s} 现场 编号{c}", "现场"), ("{s} {c}", ""), ("{s}，{c}", ""),
              ("{s} 指令{c}", ""), ("{s} 第{c}号", ""), ("{s}现场{c}", "现场"), ("{s}（{c}）", ""),
              ("{s} {c} 现场有积水", "现场有积水"), ("{s}。指令编号：{c}", ""), ("{s} 现场 {c}。", "现场"),
              ("{s} 现场　０４２７", "现场")]


@pytest.mark.parametrize("word,status,template,report", [
    (w, st, tpl, rep) for w, st in STATUSES for tpl, rep in CODE_AFTER
    if not (w == "2" and tpl.startswith("{s}现场"))])      # "2现场": a digit glued to a word is no status
def test_a_code_after_the_status_is_found(word, status, template, report):
    assert parse_reply(template.format(s=word, c="0427")) == Reply(status, "0427", report)


@pytest.mark.parametrize("text,report", [
    ("到达 现场1200人", "现场1200人"),           # a number glued to a word in the report is no code
    ("到达 12人", "12人"),
    ("到达，预计1030撤离", "预计1030撤离"),
    ("处置完毕 电话13900001234", "电话13900001234"),
    ("到达 2026年", "2026年"),
])
def test_numbers_in_a_report_are_not_codes(text, report):
    assert parse_reply(text) == Reply(parse_reply(text).status, None, report)


@pytest.mark.parametrize("text", ["0427 到达 0428", "到达现场 0427 0428", "收到 0427，编号0531"])
def test_two_different_codes_are_a_conflict(text):
    assert parse_reply(text) == Refusal("conflict")


@pytest.mark.parametrize("text", ["0427 到达 0427", "0427 到达 编号0427", "指令0427 收到 0427"])
def test_the_same_code_twice_is_one_code(text):
    assert parse_reply(text).code == "0427" and parse_reply(text).report == ""


# --- (d) filler words are not a report -------------------------------------------------------------

FILLERS = ["指令", "命令", "任务", "了", "啦", "指令了", "了 指令", "，指令。"]


@pytest.mark.parametrize("word,status", STATUSES)
@pytest.mark.parametrize("filler", FILLERS)
def test_filler_after_the_status_is_no_report(word, status, filler):
    r = parse_reply(f"0427 {word}{filler}")
    assert r == Reply(status, "0427", "")


@pytest.mark.parametrize("text,status", [
    ("到达到达", ARRIVED), ("收到收到", RECEIVED), ("完毕完毕", FINISHED), ("已到达 到达", ARRIVED),
    ("0427 2 到达 到达", ARRIVED), ("收到！收到！", RECEIVED), ("到达了到达了", ARRIVED), ("集结完毕 集结完毕", ASSEMBLED),
    ("收到 好的", RECEIVED), ("OK OK", RECEIVED), ("到达 2", ARRIVED), ("收到指令", RECEIVED), ("已收到任务", RECEIVED),
])
def test_a_repeated_keyword_is_no_report(text, status):
    r = parse_reply(text)
    assert isinstance(r, Reply) and r.status == status and r.report == ""


@pytest.mark.parametrize("text", ["指令", "命令", "指令 0427", "任务"])
def test_a_filler_alone_is_no_reply(text):
    assert isinstance(parse_reply(text), Refusal)
