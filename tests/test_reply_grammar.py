"""The reply parser on replies as commanders really type them (a table: text -> expected)."""
import pytest

from gateway.orders.grammar import (ARRIVED, ASSEMBLED, DECLINED, FINISHED, RECEIVED, Refusal, Reply,
                                    parse_reply)

R = Reply
ACCEPTED = [
    # keypad digits, with and without the code
    ("1", R(RECEIVED)),
    ("2", R(ARRIVED)),
    ("3", R(FINISHED)),
    ("4", R(ASSEMBLED)),
    ("0427 1", R(RECEIVED, "0427")),
    ("0427 2", R(ARRIVED, "0427")),
    ("0427 3", R(FINISHED, "0427")),
    ("0427 4", R(ASSEMBLED, "0427")),
    ("04272", R(ARRIVED, "0427")),
    ("0427,1", R(RECEIVED, "0427")),
    ("0427，1", R(RECEIVED, "0427")),
    ("0427。2", R(ARRIVED, "0427")),
    ("0427、3", R(FINISHED, "0427")),
    ("0427-2", R(ARRIVED, "0427")),
    ("#0427#1", R(RECEIVED, "0427")),
    ("【0427】2", R(ARRIVED, "0427")),
    ("０４２７　２", R(ARRIVED, "0427")),          # full-width digits and space
    ("０４２７　１　", R(RECEIVED, "0427")),
    ("  0427    1  ", R(RECEIVED, "0427")),
    ("0427：2", R(ARRIVED, "0427")),
    ("指令0427 收到", R(RECEIVED, "0427")),
    ("第0427号 到达", R(ARRIVED, "0427")),
    ("编号0427 1", R(RECEIVED, "0427")),
    # words for "received"
    ("收到", R(RECEIVED)),
    ("收到！", R(RECEIVED)),
    ("收到了", R(RECEIVED)),
    ("已收到", R(RECEIVED)),
    ("0427收到", R(RECEIVED, "0427")),
    ("0427 收到", R(RECEIVED, "0427")),
    ("收到 0427", R(RECEIVED, "0427")),
    ("收到0427", R(RECEIVED, "0427")),
    ("好的", R(RECEIVED)),
    ("明白", R(RECEIVED)),
    ("OK", R(RECEIVED)),
    ("ok", R(RECEIVED)),
    ("Ok 0427", R(RECEIVED, "0427")),
    ("ｏｋ", R(RECEIVED)),
    ("0427 OK", R(RECEIVED, "0427")),
    ("收到，马上出发", R(RECEIVED, None, "马上出发")),
    ("1收到", R(RECEIVED)),
    ("0427 1 收到", R(RECEIVED, "0427")),
    ("收到，预计20分钟到达", R(RECEIVED, None, "预计20分钟到达")),   # not "arrived"
    # "arrived"
    ("到达", R(ARRIVED)),
    ("已到", R(ARRIVED)),
    ("已到达", R(ARRIVED)),
    ("已经到达", R(ARRIVED)),
    ("到场", R(ARRIVED)),
    ("已到场", R(ARRIVED)),
    ("到位", R(ARRIVED)),
    ("已抵达", R(ARRIVED)),
    ("到了", R(ARRIVED)),
    ("我们已到达", R(ARRIVED)),
    ("0427已到达现场", R(ARRIVED, "0427", "现场")),
    ("0427 2 现场3人受伤，已送医", R(ARRIVED, "0427", "现场3人受伤，已送医")),
    ("0427 到场 现场有积水", R(ARRIVED, "0427", "现场有积水")),
    ("2 到达", R(ARRIVED)),
    # "finished", with the report (follow-up, responsible person and unit)
    ("完毕", R(FINISHED)),
    ("处置完毕", R(FINISHED)),
    ("处理完毕", R(FINISHED)),
    ("结束", R(FINISHED)),
    ("已结束", R(FINISHED)),
    ("已完成", R(FINISHED)),
    ("办结", R(FINISHED)),
    ("0427 处置完毕。后续：清理路障；责任人：王五；单位：城关镇", R(FINISHED, "0427", "后续：清理路障；责任人：王五；单位：城关镇")),
    ("0427 3 无需后续 责任人李四 县水利局", R(FINISHED, "0427", "无需后续 责任人李四 县水利局")),
    ("0427，3，后续由派出所跟进，责任人张三", R(FINISHED, "0427", "后续由派出所跟进，责任人张三")),
    # "assembled" (leaving the city)
    ("集结完毕", R(ASSEMBLED)),
    ("0427 集结完毕 出发", R(ASSEMBLED, "0427", "出发")),
    ("已集结", R(ASSEMBLED)),
    ("集合完毕，20人出发", R(ASSEMBLED, None, "20人出发")),
    ("0427 4 18人", R(ASSEMBLED, "0427", "18人")),
    # declined, with the reason
    ("0427 无法前往 道路塌方", R(DECLINED, "0427", "道路塌方")),
    ("无法出动，车辆故障", R(DECLINED, None, "车辆故障")),
]

REFUSED = [
    ("", "empty"),
    ("   ", "empty"),
    ("？？", "unrecognised"),
    ("你好", "unrecognised"),
    ("未到达", "unrecognised"),          # a negation is never read as the status
    ("还没到", "unrecognised"),
    ("预计20分钟到达", "unrecognised"),
    ("0427", "unrecognised"),           # code without a status
    ("0427 5", "unrecognised"),
    ("0427 12人到达", "unrecognised"),
    ("1 到达", "conflict"),             # digit and word disagree: ask, do not guess
    ("0427 2 收到", "conflict"),
    ("427 1", "bad_code"),
    ("yuan", "unrecognised"),
    ("STOP", "unrecognised"),
]


def test_table_is_large_enough():
    assert len(ACCEPTED) + len(REFUSED) >= 60


@pytest.mark.parametrize("text,expected", ACCEPTED, ids=[t or "<empty>" for t, _ in ACCEPTED])
def test_accepted(text, expected):
    assert parse_reply(text) == expected


@pytest.mark.parametrize("text,reason", REFUSED, ids=[t or "<empty>" for t, _ in REFUSED])
def test_refused(text, reason):
    assert parse_reply(text) == Refusal(reason)
