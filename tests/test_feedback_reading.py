"""The reply-reading faults of issue 9 end to end, through the feedback engine and the real
database (both backends): what is recorded, what the sender is told, what is still asked for."""
from datetime import timedelta

import pytest
import pytest_twisted
from sqlalchemy import select

from gateway.storage.schema import feedback, order_teams
from tests._orders_rig import Rig, local, phone, raw_state_tx, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def reports_tx(conn):
    return [(r.status, r.report) for r in conn.execute(select(feedback.c.status, feedback.c.report)
                                                       .order_by(feedback.c.id))]


def team_tx(conn, code):
    from gateway.storage.schema import orders
    return conn.execute(select(order_teams.c.state, order_teams.c.report).join(
        orders, orders.c.id == order_teams.c.order_id).where(orders.c.code == code)).first()


@pytest.mark.parametrize("word", ["已处置完毕", "已处理完毕", "处置完成", "已处理好", "已经处理完毕了", "处置完毕 指令"])
@pytest_twisted.inlineCallbacks
def test_a_finishing_word_with_a_suffix_still_asks_for_the_formal_report(database, word):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",))
        out, _ = yield rig.sms(phone(1, "commander"), f"{order.code} {word}", at(30))
        assert out.accepted and out.status == "finished"
        assert "请补充反馈单【处置结果】" in out.message      # the form is still asked for, field by field
        assert (yield database.run(reports_tx)) == [("finished", None)]
        assert (yield database.run(team_tx, order.code)).report is None
        out, _ = yield rig.sms(phone(1, "commander"), f"{order.code} 3 后续：清理路障（城关镇负责）", at(40))
        assert (yield database.run(team_tx, order.code)).report == "后续：清理路障（城关镇负责）"
    finally:
        rig.stop()


@pytest.mark.parametrize("template", ["到达现场 {c}", "已到达 现场 编号{c}", "到达，指令{c}", "{s}现场{c}"])
@pytest_twisted.inlineCallbacks
def test_a_code_after_the_status_picks_the_order_without_asking(database, template):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        a = yield rig.send(teams_=("PUB-01",))
        b = yield rig.send(teams_=("PUB-01",))
        out, _ = yield rig.sms(phone(1, "commander"), template.format(c=b.code, s="已到达"), at(5))
        assert out.accepted and not out.needs_code and out.order_code == b.code and out.status == "arrived"
        assert (yield database.run(team_tx, b.code)).state == "arrived"
        assert (yield database.run(team_tx, a.code)).state != "arrived"
        assert rig.outbox.to(phone(1, "commander"), "reply_help") == []
    finally:
        rig.stop()


@pytest.mark.parametrize("template", ["到达现场 {c}", "已到达 现场 编号{c}", "处置完毕 指令{c}"])
@pytest_twisted.inlineCallbacks
def test_a_wrong_code_after_the_status_is_not_silently_taken_for_the_one_open_order(database, template):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",))
        wrong = f"{(int(order.code) + 1) % 10000:04d}"
        out, raw_id = yield rig.sms(phone(1, "commander"), template.format(c=wrong), at(5))
        assert not out.accepted
        told = rig.outbox.to(phone(1, "commander"), "reply_help")[-1]
        assert wrong in told and "不是发给贵队的" in told and order.code in told
        assert (yield database.run(team_tx, order.code)).state == "sent"
        assert (yield database.run(raw_state_tx, raw_id)).state == "refused"
    finally:
        rig.stop()


@pytest.mark.parametrize("text,status", [("收到指令", "received"), ("到达到达", "arrived"), ("0427 收到 命令", "received"),
                                         ("“收到”", "received"), ("到达了 到达", "arrived")])
@pytest_twisted.inlineCallbacks
def test_fillers_are_not_stored_as_a_report(database, text, status):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",))
        out, _ = yield rig.sms(phone(1, "commander"), text.replace("0427", order.code), at(5))
        assert out.accepted and out.status == status
        assert (yield database.run(reports_tx)) == [(status, None)]
        assert rig.events.of("order.feedback")[-1]["report"] == ""
    finally:
        rig.stop()
