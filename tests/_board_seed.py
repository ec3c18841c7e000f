"""An order to all 40 teams, backdated past its deadline, with teams in several states: what the
wall board tests look at.  Answers go through the real feedback engine (SMS and keypad)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from twisted.internet import defer
from twisted.internet.defer import inlineCallbacks

from gateway.feedback.engine import FeedbackEngine
from gateway.interfaces import InboundSms, KeypadAnswer
from gateway.storage.schema import deliveries, member_phones as phones, members, order_teams, orders, teams

BACKDATE = timedelta(minutes=45)      # past the 20 / 30 min arrival deadline, day or night
# The rig has no modem: these teams' order SMS stay queued (待发送 on the wall); every other
# team's was accepted by a modem (已发送 until it answers).
STILL_QUEUED = ("PUB-23", "PRO-16")


class QuietOutbox:
    """The confirmations the engine sends back; the board tests do not look at SMS."""

    def __init__(self):
        self.sent = []

    def enqueue(self, phone, text, **kw):
        self.sent.append((phone, text))
        return defer.succeed(len(self.sent))


@dataclass
class Seeded:
    code: str
    engine: FeedbackEngine
    commander: dict            # team code -> commander's phone
    expected: dict             # team code -> state the seeding left it in (the answered ones)
    queued: tuple = STILL_QUEUED   # teams whose order SMS still waits for a modem


def _commanders_tx(conn):
    rows = conn.execute(select(teams.c.code, phones.c.e164).join(members, members.c.team_id == teams.c.id)
                        .join(phones, phones.c.member_id == members.c.id)
                        .where(members.c.role == "commander")).all()
    out = {}
    for code, e164 in rows:
        out.setdefault(code, e164)
    return out


def _backdate_tx(conn, code, by):
    oid = conn.execute(select(orders.c.id, orders.c.created_at).where(orders.c.code == code)).first()
    conn.execute(update(orders).where(orders.c.id == oid.id).values(created_at=oid.created_at - by))
    for ot in conn.execute(select(order_teams.c.id, order_teams.c.sent_at, order_teams.c.state_at)
                           .where(order_teams.c.order_id == oid.id)).all():
        conn.execute(update(order_teams).where(order_teams.c.id == ot.id).values(
            sent_at=ot.sent_at and ot.sent_at - by, state_at=ot.state_at - by))


def _modems_accepted_tx(conn, code, except_teams):
    """What the SMS bank records when a modem accepted an order SMS (sms/store.py): `sent`."""
    oid = conn.execute(select(orders.c.id).where(orders.c.code == code)).scalar_one()
    waiting = select(teams.c.id).where(teams.c.code.in_(except_teams))
    conn.execute(update(deliveries).where(deliveries.c.order_id == oid, deliveries.c.channel == "sms",
                                          deliveries.c.team_id.not_in(waiting)).values(state="sent"))


@inlineCallbacks
def seed_order(rig, cfg, answers=None):
    """POST an order to all teams, backdate it, and answer for a few teams by SMS."""
    status, body, _ = yield rig.call("POST", "/api/v1/orders", {
        "incident_ref": "XJ-WALL-1", "kind": "rescue", "rule": "same_township", "target": "all",
        "text": "白塔镇山体滑坡，请立即赶赴现场。"}, key=rig.keys["dispatch"])
    assert status == 201, body
    code = body["order_code"]
    yield rig.db.run(_backdate_tx, code, BACKDATE)
    yield rig.db.run(_modems_accepted_tx, code, STILL_QUEUED)
    commander = yield rig.db.run(_commanders_tx)
    engine = FeedbackEngine(rig.db, QuietOutbox(), None, cfg)
    answers = answers if answers is not None else {
        "PUB-01": (f"{code} 收到", "received"),
        "PUB-02": (f"到达现场 {code}", "arrived"),
        "PUB-03": (f"{code}处置完毕 无需后续跟进 负责人张三 县应急局", "finished"),
        "PRO-01": (f"{code} 无法执行 车辆故障", "declined"),
    }
    now = datetime.now(timezone.utc)
    for n, (team, (text, _)) in enumerate(answers.items()):
        outcome = yield engine.sms_received(InboundSms(raw_id=None, sender=commander[team], text=text,
                                                       received_at=now, modem="test"))
        assert outcome.accepted, (team, text, outcome)
    return Seeded(code, engine, commander, {t: s for t, (_, s) in answers.items()})


def keypad(engine, phone, digit, code):
    return engine.keypad_answer(KeypadAnswer(raw_id=None, caller=phone, digit=digit, call_id=f"test-{phone}",
                                             received_at=datetime.now(timezone.utc), order_code=code))
