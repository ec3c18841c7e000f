"""The roster check (both backends): the test message is its own, no escalation is planned, and the
status tells who confirmed (by SMS, with or without the code, or by keypad), who did not, and
which numbers failed; roster checks stay off the wall board and out of the assessment."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from gateway.config import load_config
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.feedback.store import Answer, record_answer_tx
from gateway.orders.grammar import parse_reply
from gateway.orders.order import Target
from gateway.orders.roster_check import check_status_tx, create_check_tx, render_status
from gateway.orders.store import hand_deliveries_tx
from gateway.reports.timings import timings_tx
from gateway.storage import Database
from gateway.storage.schema import deliveries, escalation_steps, order_teams, orders
from adapters.board_data import board_tx
from tests._http_rig import ROSTER

T0 = datetime(2026, 5, 6, 2, 0, tzinfo=timezone.utc)


def _mark_delivery_tx(conn, delivery_id, state, detail=None):
    """What the SMS store records for a delivery when the modem and the network answer."""
    conn.execute(update(deliveries).where(deliveries.c.id == delivery_id)
                 .values(state=state, **({"detail": detail} if detail else {})))


def test_roster_check_reports_confirmed_silent_and_failed_numbers(migrated_url):
    cfg = load_config(None, {}).escalation
    db = Database(None, migrated_url)
    try:
        db.run_sync(import_roster, read_roster(ROSTER), source="roster", actor="test")
        made = db.run_sync(create_check_tx, Target.parse("teams:PUB-07,PRO-05"), True, T0, cfg,
                           random.Random(3), "cli:test")
        assert (made.teams, made.people) == (2, 4)

        def look(conn):
            oid = conn.execute(select(orders.c.id).where(orders.c.code == made.code)).scalar()
            steps = conn.execute(select(func.count()).select_from(escalation_steps).join(
                order_teams, order_teams.c.id == escalation_steps.c.order_team_id)
                .where(order_teams.c.order_id == oid)).scalar()
            sms, calls = [], []        # what the fan-out stages in the outbox and for the order caller
            handed = hand_deliveries_tx(conn, oid, T0, cfg, lambda c, now, phone, text, **kw: sms.append(
                dict(phone=phone, text=text, **kw)) or {"id": len(sms)}, lambda c, now, **kw: calls.append(kw))
            return steps, handed, sms, calls
        steps, handed, sms, calls = db.run_sync(look)
        assert steps == 0                                     # nobody is chased over a roster check
        assert len(sms) == 4 and all(m["text"] == f"【应急联动中心】通讯录核对{made.code}：请回复 {made.code} 1 "
                                     "确认本号码可用（接到电话按1亦可）。无需出动。" for m in sms)
        assert handed.calls == len(calls) == 4
        ids = {m["phone"]: m["delivery_id"] for m in sms}
        # 冯明 (PUB-07 commander) replies with the code; 董红 (deputy) a bare "1"; 侯霞 (PRO-05) presses 1;
        # 黎斌's number is not registered: the SMS failed.
        for phone, channel, text, minutes in (("+447700900018", "sms", f"{made.code} 1", 2),
                                              ("+447700900019", "sms", "1", 3),
                                              ("+447700900081", "keypad", "1", 1)):
            parsed = parse_reply(text)
            v = db.run_sync(record_answer_tx, Answer(channel, phone, parsed, T0 + timedelta(minutes=minutes)), cfg)
            assert v.outcome == "recorded", v
        for phone, state in (("+447700900018", "sent"), ("+447700900019", "delivered"),
                             ("+447700900081", "sent")):
            db.run_sync(_mark_delivery_tx, ids[phone], state)
        db.run_sync(_mark_delivery_tx, ids["+447700900082"], "failed", "CMS ERROR 28: unidentified subscriber")
        o, people = db.run_sync(check_status_tx, made.code)
        by = {p.name: p for p in people}
        assert sorted(by) == ["侯霞", "冯明", "董红", "黎斌"]
        assert (by["冯明"].channel, by["董红"].channel, by["侯霞"].channel) == ("sms", "sms", "keypad")
        assert by["董红"].confirmed_at == T0 + timedelta(minutes=3)
        assert by["黎斌"].confirmed_at is None and by["黎斌"].failed
        text = render_status(o, people, ZoneInfo("Asia/Shanghai"))
        assert "已确认 3，未确认 0，号码失败 1" in text and "unidentified subscriber" in text
        # Not on the wall, not in the assessment.
        board = db.run_sync(board_tx, cfg, "Asia/Shanghai", T0 + timedelta(minutes=5))
        assert board.focus is None and board.others == []
        assert db.run_sync(timings_tx, cfg, T0 - timedelta(days=1), T0 + timedelta(days=1)) == []
        assert db.run_sync(lambda c: c.execute(select(func.count()).select_from(deliveries)).scalar()) == 8
    finally:
        db.engine.dispose()
