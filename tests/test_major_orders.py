"""Major orders on the injected clock: the situation-report cadence and its ladder, the leaders'
news at each milestone and in the digest, their replies as notes (both backends)."""
from datetime import timedelta

import pytest_twisted
from sqlalchemy import insert, select

from gateway.leaders.config import LeadersSection
from gateway.leaders.notifier import LeaderNotifier
from gateway.orders.summary import load_summary_tx, render
from gateway.storage.schema import escalation_steps, leader_notifications, leaders, order_notes, situation_reports
from tests._orders_rig import SUPERVISOR, Rig, local, phone, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)          # a Monday morning in Xianju
LEADERS = [("林总", "commander_in_chief", "+8613700000001"), ("许副", "deputy_commander", "+8613700000002"),
           ("周主任", "office_director", "+8613700000003"), ("陈书记", "county_leader", "+8613700000004")]


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def seed_leaders_tx(conn):
    for name, role, e164 in LEADERS:
        conn.execute(insert(leaders).values(name=name, role=role, e164=e164, active=True, created_at=T0))


def steps_tx(conn, stage):
    return conn.execute(select(escalation_steps.c.order_team_id, escalation_steps.c.step, escalation_steps.c.action,
                               escalation_steps.c.state, escalation_steps.c.due_at, escalation_steps.c.reason)
                        .where(escalation_steps.c.stage == stage).order_by(escalation_steps.c.due_at,
                                                                          escalation_steps.c.id)).all()


@pytest_twisted.inlineCallbacks
def test_situation_reports_on_a_cadence_missed_one_chased_finished_stops(database):
    yield database.run(seed_directory_tx, 2)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01", "PUB-02"), major=True)
        code = order.code
        # The order SMS tells the teams they owe situation reports.
        assert any("续报现场动态" in t for t in rig.outbox.to(phone(1, "commander"), "order"))
        out, _ = yield rig.sms(phone(1, "commander"), f"{code} 到达", at(10))
        assert out.accepted and "每30分钟续报" in out.message
        s = yield database.run(load_summary_tx, code, rig.cfg)
        assert s.major and s.teams[0].next_step[:2] == ("situation", "sms_again")
        assert s.teams[0].next_step[2] == at(40)
        # A report by SMS 15 minutes later: kept, the team stays arrived, the next one is due 30 min on.
        out, _ = yield rig.sms(phone(1, "deputy"), f"{code} 续报 塌方体约200方，已疏散群众12人", at(25))
        assert out.accepted and out.status == "situation" and "10:55前续报" in out.message
        s = yield database.run(load_summary_tx, code, rig.cfg)
        assert s.teams[0].state == "arrived" and s.teams[0].next_step[2] == at(55)
        assert [(e.kind, e.text) for e in s.timeline] == [("situation", "塌方体约200方，已疏散群众12人")]
        assert rig.events.of("order.situation_report")[0]["text"] == "塌方体约200方，已疏散群众12人"
        # Silence: at 10:55 the reminder, at 11:00 the commander is called, at 11:05 the duty supervisor.
        yield rig.advance_to(at(54))
        assert not [m for m in rig.outbox.purposes("reminder") if "续报" in m["text"]]
        yield rig.advance_to(at(56))
        reminders = [m for m in rig.outbox.purposes("reminder") if "现场动态" in m["text"]]
        assert sorted(m["phone"] for m in reminders) == sorted([phone(1, "commander"), phone(1, "deputy")])
        yield rig.advance_to(at(61))
        assert [c["purpose"] for c in rig.caller.to(phone(1, "commander"))] == ["escalation"]
        yield rig.advance_to(at(66))
        assert any("现场动态超时未反馈" in t for t in rig.outbox.to(SUPERVISOR, "supervisor"))
        fired = [r for r in (yield database.run(steps_tx, "situation")) if r.state == "fired"]
        assert [r.action for r in fired] == ["sms_again", "call_commander", "supervisor"]
        assert all("no situation report from team PUB-01" in r.reason and "due 10:55" in r.reason for r in fired)
        # The cadence goes on: the next report is owed at 11:25 (a period after the missed one).
        s = yield database.run(load_summary_tx, code, rig.cfg)
        assert s.teams[0].next_step[:2] == ("situation", "sms_again") and s.teams[0].next_step[2] == at(85)
        # Finished: no report is owed any more, however long we wait.
        out, _ = yield rig.sms(phone(1, "commander"), f"{code} 处置完毕", at(70))
        assert out.accepted
        before = len(rig.outbox.purposes("reminder"))
        yield rig.advance_to(at(200))
        assert not [m for m in rig.outbox.purposes("reminder")[before:] if "现场动态" in m["text"]]
        pending = [r for r in (yield database.run(steps_tx, "situation")) if r.state == "pending"]
        assert pending == []
        # A team that never arrived owes no situation report.
        assert not [r for r in (yield database.run(steps_tx, "situation")) if r.order_team_id != fired[0].order_team_id]
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_an_ordinary_order_keeps_a_situation_report_but_owes_none(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",))
        yield rig.sms(phone(1, "commander"), f"{order.code} 到达", at(5))
        out, _ = yield rig.sms(phone(1, "commander"), f"现场情况：{order.code} 火势已控制", at(8))
        assert out.accepted and out.status == "situation" and "前续报" not in out.message
        assert (yield database.run(steps_tx, "situation")) == []
        rows = yield database.run(lambda c: c.execute(select(situation_reports.c.text)).scalars().all())
        assert rows == ["火势已控制"]
    finally:
        rig.stop()


def kinds_tx(conn):
    return conn.execute(select(leader_notifications.c.kind, leader_notifications.c.phone, leader_notifications.c.text,
                               leader_notifications.c.state).order_by(leader_notifications.c.id)).all()


@pytest_twisted.inlineCallbacks
def test_leaders_hear_each_milestone_once_and_a_digest_and_their_replies_are_notes(database):
    yield database.run(seed_directory_tx, 2)
    yield database.run(seed_leaders_tx)
    rig = Rig(database, T0)
    rules = LeadersSection(digest_minutes=60, daily_roles=["office_director"], sweep_seconds=5)
    notifier = LeaderNotifier(database, rig.clock, rig.outbox, rules, rig.cfg)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01", "PUB-02"), major=True)
        code = order.code
        yield notifier.sweep()
        yield notifier.sweep()                       # twice: still once per leader
        sent = rig.outbox.purposes("leader")
        assert sorted(m["phone"] for m in sent) == sorted(p for _, _, p in LEADERS)
        assert all(f"重大事件 指令{code}" in m["text"] and "第1救援队" in m["text"] for m in sent)
        yield rig.sms(phone(1, "commander"), f"{code} 到达", at(12))
        yield rig.advance_to(at(13))
        yield notifier.sweep()
        news = [r.kind for r in (yield database.run(kinds_tx))]
        assert news.count("first_arrived") == 4 and "all_arrived" not in news
        # PUB-02 misses its 20-minute arrival deadline: the leaders hear of it once.
        yield rig.advance_to(at(21))
        yield notifier.sweep()
        missed = [r for r in (yield database.run(kinds_tx)) if r.kind == "missed"]
        assert len(missed) == 4 and "第2救援队到达超时未反馈（时限10:20）" in missed[0].text
        yield rig.sms(phone(2, "deputy"), f"{code} 已到达", at(25))
        yield rig.sms(phone(1, "commander"), f"{code} 续报 已转移群众30人", at(30))
        yield rig.sms(phone(2, "commander"), f"{code} 进展 道路抢通", at(40))
        yield rig.advance_to(at(41))
        yield notifier.sweep()
        news = [r.kind for r in (yield database.run(kinds_tx))]
        assert news.count("all_arrived") == 4 and "digest" not in news
        # The digest at 11:00 names each report of the hour.
        yield rig.advance_to(at(61))
        yield notifier.sweep()
        digests = [r for r in (yield database.run(kinds_tx)) if r.kind == "digest"]
        assert len(digests) == 4
        assert "第1救援队 10:30 已转移群众30人" in digests[0].text and "第2救援队 10:40 道路抢通" in digests[0].text
        # A leader's reply is a note on the order, never a team's state.
        out, _ = yield rig.sms("+8613700000001", "请注意救援人员安全，随时报告", at(62))
        assert out.accepted and f"指令{code}" in out.message
        notes = yield database.run(lambda c: c.execute(select(order_notes.c.author, order_notes.c.text)).all())
        assert [(n.author, n.text) for n in notes] == [("林总", "请注意救援人员安全，随时报告")]
        s = yield database.run(load_summary_tx, code, rig.cfg)
        assert [t.state for t in s.teams] == ["arrived", "arrived"]
        assert ("note", "林总") in [(e.kind, e.who) for e in s.timeline]
        text = render(s, rig.cfg)                     # `yihu order show`
        assert text.startswith("【重大】指令") and "时间线：" in text and "领导批示 林总：请注意救援人员安全" in text
        assert "现场动态 第1救援队 指挥1：已转移群众30人" in text
        assert sum(1 for e in s.timeline if e.kind == "leader_sms") == len((yield database.run(kinds_tx)))
        # Finished: both teams report it; the leaders hear it once.
        yield rig.sms(phone(1, "commander"), f"{code} 3", at(90))
        yield rig.sms(phone(2, "commander"), f"{code} 3", at(95))
        yield rig.advance_to(at(96))
        yield notifier.sweep()
        yield notifier.sweep()
        news = [r.kind for r in (yield database.run(kinds_tx))]
        assert news.count("finished") == 4 and news.count("created") == 4
        assert all(r.state == "handed" for r in (yield database.run(kinds_tx)))
        assert len(rig.outbox.purposes("leader")) == len(news)
    finally:
        rig.stop()
        notifier.stop()


@pytest_twisted.inlineCallbacks
def test_ordinary_orders_go_into_one_daily_digest_at_the_set_local_time(database):
    yield database.run(seed_directory_tx, 1)
    yield database.run(seed_leaders_tx)
    rig = Rig(database, T0)
    rules = LeadersSection(daily_digest_at="08:00", daily_roles=["office_director"], sweep_seconds=60)
    notifier = LeaderNotifier(database, rig.clock, rig.outbox, rules, rig.cfg)
    yield rig.start()
    try:
        a = yield rig.send(teams_=("PUB-01",))
        yield rig.sms(phone(1, "commander"), f"{a.code} 到达", at(5))
        notifier.start()                               # on the clock: a sweep now, then every minute
        yield notifier.sweep()
        assert rig.outbox.purposes("leader") == []     # ordinary: nothing at creation or arrival
        tomorrow_0759 = local(2026, 3, 3, 7, 59)
        rig.clock.advance(tomorrow_0759.timestamp() - rig.clock.seconds())
        yield notifier.sweep()
        assert rig.outbox.purposes("leader") == []
        rig.clock.advance(120)                          # 08:01: the looping sweep sends it
        yield notifier.sweep()
        daily = rig.outbox.purposes("leader")
        assert [m["phone"] for m in daily] == ["+8613700000003"]
        assert f"{a.code} INC-1 已到达1" in daily[0]["text"] and "一般指令日报（03-02）共1条" in daily[0]["text"]
        rig.clock.advance(3600)
        yield notifier.sweep()
        assert len(rig.outbox.purposes("leader")) == 1  # once a day
    finally:
        rig.stop()
        notifier.stop()


@pytest_twisted.inlineCallbacks
def test_a_spoken_report_is_kept_with_its_recording_and_length_and_resets_the_cadence(database):
    from gateway.interfaces import SpokenReport
    from tests._orders_rig import raw_tx
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    try:
        order = yield rig.send(teams_=("PUB-01",), major=True)
        yield rig.sms(phone(1, "commander"), f"{order.code} 到达", at(10))
        raw_id = yield database.run(raw_tx, "keypad", phone(1, "deputy"), "5", at(30))
        out = yield rig.feedback.situation_recorded(SpokenReport(
            raw_id, phone(1, "deputy"), order.code, "call-9", "/var/spool/yihu/0427-call-9.wav", 42.5, at(30)))
        assert out.accepted and out.status == "situation"
        s = yield database.run(load_summary_tx, order.code, rig.cfg)
        [entry] = s.timeline
        assert (entry.kind, entry.channel, entry.audio_path, entry.audio_seconds) == \
            ("situation", "keypad", "/var/spool/yihu/0427-call-9.wav", 42.5)
        assert s.teams[0].state == "arrived" and s.teams[0].next_step[2] == at(60)
        # Confirmed by SMS too, as every keypad answer is, with when the next report is due.
        assert rig.outbox.to(phone(1, "deputy"), "confirmation") == [f"已记录 {order.code} 现场动态 10:30。请于11:00前续报"]
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_the_cadence_survives_a_restart_from_the_database_alone(database):
    yield database.run(seed_directory_tx, 1)
    rig = Rig(database, T0)
    yield rig.start()
    order = yield rig.send(teams_=("PUB-01",), major=True)
    yield rig.sms(phone(1, "commander"), f"{order.code} 到达", at(10))
    rig.stop()
    # The gateway is down from 10:10 to 10:43; the report due at 10:40 was missed meanwhile.
    again = Rig(database, at(43))
    yield again.start()
    try:
        yield again.advance_to(at(44))
        reminders = [m for m in again.outbox.purposes("reminder") if "现场动态" in m["text"]]
        assert sorted(m["phone"] for m in reminders) == sorted([phone(1, "commander"), phone(1, "deputy")])
        fired = [r for r in (yield database.run(steps_tx, "situation")) if r.state == "fired"]
        assert [r.action for r in fired] == ["sms_again"] and "fired" in fired[0].reason and "late" in fired[0].reason
    finally:
        again.stop()
