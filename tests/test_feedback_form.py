"""The formal feedback form (正式反馈单): filled from SMS in the ways people write it, asked for
field by field, completed by a dispatcher; the 24 h report deadline is met only by a complete form."""
from datetime import datetime, timedelta, timezone

import pytest
import pytest_twisted
from sqlalchemy import select, update

from gateway.feedback import form as ff
from gateway.feedback import form_store
from gateway.orders.summary import load_summary_tx
from gateway.storage.schema import escalation_steps, feedback_forms, order_teams, orders
from tests._http_rig import start_rig
from tests._orders_rig import Rig, local, phone, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)


def at(minutes):
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize("text, expected", [
    ("责任人：张三；责任单位：城关镇", {"responsible_person": "张三", "responsible_unit": "城关镇"}),
    ("责任人张三 单位城关镇", {"responsible_person": "张三", "responsible_unit": "城关镇"}),
    ("负责人: 李四, 负责单位: 白塔镇政府", {"responsible_person": "李四", "responsible_unit": "白塔镇政府"}),
    ("处置结果：塌方已清理，道路恢复通行。需后续处置：是。伤亡/损失：无",
     {"result": "塌方已清理，道路恢复通行", "follow_up": True, "casualties": "无"}),
    ("无需后续处置", {"follow_up": False}),
    ("需后续处置 否", {"follow_up": False}),
    ("伤亡：无，损失约2万元", {"casualties": "无；损失：约2万元"}),
    ("备注：夜间加强巡查", {"remarks": "夜间加强巡查"}),
    ("后续：清淤；责任人：王五；单位：白塔镇",
     {"follow_up": True, "remarks": "后续：清淤", "responsible_person": "王五", "responsible_unit": "白塔镇"}),
    ("城关镇单位领导已到场", {}),     # a short label glued to a word is text, not a field
])
def test_labelled_fields_as_people_write_them(text, expected):
    assert ff.parse_fields(text).values == expected


def test_what_is_missing_depends_on_follow_up():
    assert ff.missing({}) == ["result", "follow_up", "casualties"]
    assert ff.missing({"result": "x", "follow_up": True, "casualties": "无"}) == ["responsible_person",
                                                                                 "responsible_unit"]
    assert ff.missing({"result": "x", "follow_up": False, "casualties": "无"}) == []


def form_tx(conn, code):
    row = conn.execute(select(feedback_forms).join(order_teams, order_teams.c.id == feedback_forms.c.order_team_id)
                       .join(orders, orders.c.id == order_teams.c.order_id).where(orders.c.code == code)).first()
    return row


def report_steps_tx(conn):
    return conn.execute(select(escalation_steps.c.state, escalation_steps.c.reason)
                        .where(escalation_steps.c.stage == "report").order_by(escalation_steps.c.due_at)).all()


@pytest_twisted.inlineCallbacks
def test_field_by_field_prompts_until_the_form_is_complete(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",))
        c = order.code
        cmd = phone(1, "commander")
        out, _ = yield rig.sms(cmd, f"{c} 3", at(40))
        assert "请补充反馈单【处置结果】" in out.message
        # Each answer is taken for the field asked, and the next missing one is asked for.
        for answer, asked_next in (("塌方已清理，道路恢复通行", "需后续处置"), ("是", "责任人"), ("张三", "责任单位"),
                                   ("城关镇", "伤亡/损失")):
            out, _ = yield rig.sms(cmd, answer, at(41))
            assert out.accepted and f"请补充反馈单【{asked_next}】" in out.message, (answer, out.message)
        out, _ = yield rig.sms(cmd, "无", at(42))
        assert out.accepted and "反馈单已齐全" in out.message
        f = yield database.run(form_tx, c)
        assert (f.result, f.follow_up, f.responsible_person, f.responsible_unit, f.casualties, f.complete) == \
            ("塌方已清理，道路恢复通行", True, "张三", "城关镇", "无", True)
        assert f.updated_by == f"sms:{cmd}"
        # Complete: the 24 h report ladder stops.
        assert {r.state for r in (yield database.run(report_steps_tx))} == {"cancelled"}
        assert rig.events.of("order.form")[-1]["complete"] is True
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_fields_in_one_message_in_the_finishing_report_or_one_per_message(database):
    yield database.run(seed_directory_tx, 2)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01", "PUB-02"))
        c = order.code
        # Team 1: everything in the finishing report.
        out, _ = yield rig.sms(phone(1, "deputy"), f"{c} 处置完毕 道路已抢通 需后续处置：是 责任人：张三；"
                                                   "责任单位：城关镇；伤亡：无", at(30))
        assert out.accepted and "请补充" not in out.message
        # Team 2: one field per message, with the order code, labelled, in any order.
        yield rig.sms(phone(2, "commander"), f"{c} 3 房屋加固完成", at(35))
        for text in (f"{c} 责任单位：白塔镇", f"{c} 责任人李四", f"{c} 伤亡/损失：轻伤1人", f"{c} 需后续处置 是"):
            out, _ = yield rig.sms(phone(2, "commander"), text, at(36))
            assert out.accepted and out.status == "form", (text, out.message)
        s = yield database.run(load_summary_tx, c, rig.cfg)
        f1, f2 = s.teams[0].form, s.teams[1].form
        assert f1["complete"] and f1["result"] == "道路已抢通" and f1["responsible_unit"] == "城关镇"
        assert f2["complete"] and (f2["responsible_person"], f2["responsible_unit"], f2["casualties"]) == \
            ("李四", "白塔镇", "轻伤1人")
        # A form message from a team with no finished order is not a form: the usual help answers.
        out, _ = yield rig.sms(phone(1, "commander"), "责任人：王五", at(40))
        assert not out.accepted
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_the_24h_deadline_is_met_only_by_a_complete_form_and_a_dispatcher_can_complete_it(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",))
        c = order.code
        yield rig.sms(phone(1, "commander"), f"{c} 到达", at(10))
        # Finished with a report, but the form lacks the casualties and the follow-up answer.
        yield rig.sms(phone(1, "commander"), f"{c} 3 群众已全部转移", at(60))
        yield rig.advance_to(at(24 * 60 + 1))
        reminders = rig.outbox.to(phone(1, "commander"), "reminder")
        assert any("请补全正式反馈单" in t for t in reminders)
        states = [r.state for r in (yield database.run(report_steps_tx))]
        assert states[0] == "fired" and "pending" in states
        assert "complete feedback form" in (yield database.run(report_steps_tx))[0].reason
        # The dispatcher completes it (by phone with the team): the ladder stops there.
        fs, _ot, next_due = yield database.run(form_store.dispatcher_update_tx, c, "PUB-01",
                                               {"follow_up": False, "casualties": "无"}, "api:desk-1", at(24 * 60 + 2))
        assert fs.complete and fs.missing == [] and next_due is None
        assert [r.state for r in (yield database.run(report_steps_tx))].count("pending") == 0
        f = yield database.run(form_tx, c)
        assert f.result == "群众已全部转移" and f.updated_by == "api:desk-1" and f.completed_at is not None
        complete, finished = yield database.run(form_store.complete_forms_count)
        assert (complete, finished) == (1, 1)
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_put_report_over_http_dispatch_scope_and_the_printed_page(migrated_url, tmp_path):
    rig = yield start_rig(migrated_url, tmp_path)
    try:
        status, body, _ = yield rig.call("POST", "/api/v1/orders", {
            "incident_ref": "XJ-9", "kind": "rescue", "text": "山体滑坡", "target": "teams:PUB-07,PUB-08",
            "rule": "same_township", "major": True}, key=rig.keys["dispatch"])
        assert status == 201
        code = body["order_code"]
        path = f"/api/v1/orders/{code}/teams/PUB-07/report"
        status, body, _ = yield rig.call("PUT", path, {"result": "已处置"}, key=rig.keys["dispatch"])
        assert status == 409 and body["field"] == "team" and "finished" in body["error"]
        yield rig.db.run(lambda c: c.execute(update(order_teams).values(state="finished",
                                                                        finished_at=datetime.now(timezone.utc))))
        status, body, _ = yield rig.call("PUT", path, {"result": "已处置", "follow_up": True}, key=rig.keys["read"])
        assert status == 403
        status, body, _ = yield rig.call("PUT", path, {"result": "已处置", "follow_up": True},
                                         key=rig.keys["dispatch"])
        assert status == 200 and body["complete"] is False
        assert body["missing"] == ["responsible_person", "responsible_unit", "casualties"]
        status, body, _ = yield rig.call("PUT", path, {"responsible_person": "张三", "responsible_unit": "白塔镇",
                                                       "casualties": "无", "remarks": "持续监测"},
                                         key=rig.keys["dispatch"])
        assert status == 200 and body["complete"] is True and body["missing"] == []
        status, body, _ = yield rig.call("PUT", path, {"follow_up": "yes"}, key=rig.keys["dispatch"])
        assert status == 422 and body["field"] == "follow_up"
        status, body, _ = yield rig.call("PUT", f"/api/v1/orders/{code}/teams/NOPE-1/report", {"result": "x"},
                                         key=rig.keys["dispatch"])
        assert status == 404
        status, page, resp = yield rig.call("GET", path + "?format=html", key=rig.keys["read"])
        assert status == 200 and resp.headers.getRawHeaders("content-type")[0].startswith("text/html")
        for want in ("正式反馈单", code, "白塔镇综合应急救援分队", "张三", "持续监测", "齐全"):
            assert want in page, want
        status, summary, _ = yield rig.call("GET", f"/api/v1/orders/{code}", key=rig.keys["read"])
        assert summary["major"] is True
        assert [t["form"]["complete"] for t in summary["teams"]] == [True, False]
    finally:
        yield rig.stop()
