"""A drill order on the real phones: every SMS and the spoken order carry 【演练】, its events say
"drill": true, and its figures are kept apart from real incidents."""
import json
import subprocess
import sys
from datetime import timedelta

import pytest_twisted
from sqlalchemy import select

from gateway import eventlog, metrics
from gateway.mode import DRILL_PREFIX
from gateway.orders.cli import _list_tx
from gateway.orders.drill import DrillLabelledOutbox, DrillOrders
from gateway.orders.order import OrderRequest, Target
from gateway.orders.summary import load_summary_tx, render
from gateway.storage.schema import orders
from ivr.orders import OrderBook
from tests._orders_rig import SUPERVISOR, Rig, local, phone, seed_directory_tx

T0 = local(2026, 3, 2, 10, 0)


def _rig(database):
    """The rig's domain, with the gateway's labelled outbox; its events as the log committed them."""
    rig = Rig(database, T0)
    drills = DrillOrders(database)
    labelled = DrillLabelledOutbox(rig.outbox, drills)
    rig.fanout.outbox = rig.escalation.outbox = rig.feedback.outbox = labelled
    rig.orders.drills = drills
    rig.escalation.is_drill = rig.feedback.is_drill = drills.is_drill
    return rig, drills, rig.events


def _send(rig, drill, ref):
    return rig.orders.send(OrderRequest(ref, "rescue", "白塔镇山体滑坡，速派人员", Target("teams", ("PUB-01", "PUB-02")),
                                        "same_township", created_by="cli:test", drill=drill))


@pytest_twisted.inlineCallbacks
def test_every_message_of_a_drill_order_is_labelled_and_a_real_one_is_not(database):
    yield database.run(seed_directory_tx, 2)
    rig, drills, bus = _rig(database)
    yield rig.start()
    before = metrics.ORDERS_CREATED.labels(drill="true")._value.get()
    answers = metrics.FEEDBACK_RECORDED.labels(status="received", channel="sms", drill="true")._value.get()
    steps = metrics.ESCALATION_STEPS.labels(stage="receipt", action="supervisor", drill="true")._value.get()
    try:
        drill = yield _send(rig, True, "DRILL-1")
        yield rig.fanout.send(drill.order_id)
        real = yield _send(rig, False, "INC-7")
        yield rig.fanout.send(real.order_id)
        assert metrics.ORDERS_CREATED.labels(drill="true")._value.get() == before + 1

        def texts(code, purpose):
            return [m["text"] for m in rig.outbox.purposes(purpose) if code in m["text"]]
        # the order itself, to commander and deputy of both teams
        assert len(texts(drill.code, "order")) == 4
        assert all(t.startswith(DRILL_PREFIX) for t in texts(drill.code, "order"))
        assert not any(DRILL_PREFIX in t for t in texts(real.code, "order"))
        # the confirmation of an answer
        outcome, _ = yield rig.sms(phone(1, "commander"), f"{drill.code} 收到")
        assert outcome.accepted
        assert rig.outbox.to(phone(1, "commander"), "confirmation") == [f"{DRILL_PREFIX}已记录 {drill.code} 收到 10:00"]
        yield rig.sms(phone(1, "commander"), f"{real.code} 收到")
        assert rig.outbox.to(phone(1, "commander"), "confirmation")[1] == f"已记录 {real.code} 收到 10:00"
        # reminders and the duty supervisor's alert, up the ladder
        yield rig.advance_to(T0 + timedelta(minutes=12))
        reminders = [m["text"] for m in rig.outbox.purposes("reminder")]
        assert [t.startswith(DRILL_PREFIX) for t in reminders if drill.code in t] == [True, True]
        assert not any(t.startswith(DRILL_PREFIX) for t in reminders if real.code in t)
        sup = rig.outbox.to(SUPERVISOR, "supervisor")
        assert sorted(t.startswith(DRILL_PREFIX) for t in sup) == [False, True]
        assert metrics.FEEDBACK_RECORDED.labels(status="received", channel="sms", drill="true")._value.get() \
            == answers + 1
        assert metrics.ESCALATION_STEPS.labels(stage="receipt", action="supervisor", drill="true")._value.get() \
            == steps + 1
        # every event about the drill order says so; none about the real one does (as committed
        # to the log, and as read back from it by the stream and the webhooks)
        for kind, payload in bus.events:
            assert payload["drill"] is (payload.get("order_code") == drill.code), (kind, payload)
        assert {k for k, p in bus.events if p["drill"]} >= {"order.created", "order.feedback",
                                                             "order.escalated", "order.supervisor_alert"}
        logged = yield database.run(eventlog.read_range, 0, 10 ** 9)
        assert [(e.kind, e.payload) for e in logged] == bus.events
        # the spoken order on a call
        brief = yield OrderBook(database).brief(drill.code)
        assert brief.text.startswith(DRILL_PREFIX)
        assert not (yield OrderBook(database).brief(real.code)).text.startswith(DRILL_PREFIX)
        # figures apart: the list and the summary say which is which
        rows, _counts = yield database.run(_list_tx, False)
        assert {r.code: bool(r.drill) for r in rows} == {drill.code: True, real.code: False}
        s = yield database.run(load_summary_tx, drill.code, rig.cfg)
        assert s.drill and render(s, rig.cfg).startswith(f"{DRILL_PREFIX}指令 {drill.code}")
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_drill_orders_are_known_after_a_restart(database):
    yield database.run(seed_directory_tx, 2)
    rig, drills, _bus = _rig(database)
    created = yield _send(rig, True, "DRILL-2")
    rig.stop()
    fresh = DrillOrders(database)
    yield fresh.start()
    assert fresh.is_drill(created.order_id)


def test_cli_drill_flag_and_list_keep_drills_apart(tmp_path):
    url = f"sqlite:///{tmp_path / 'yihu.sqlite'}"
    env_args = ["--database-url", url]

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                              timeout=60)
    from gateway.storage.migrate import upgrade
    upgrade(url)
    from gateway.storage import Database
    db = Database(None, url)
    db.run_sync(seed_directory_tx, 1)
    r = cli("order", "send", *env_args, "--incident", "DRILL-9", "--kind", "rescue", "--rule", "same_township",
            "--target", "teams:PUB-01", "--text", "集结演练", "--drill")
    assert r.returncode == 0, r.stderr
    assert "as a DRILL" in r.stdout
    r2 = cli("order", "send", *env_args, "--incident", "INC-9", "--kind", "rescue", "--rule", "same_township",
             "--target", "teams:PUB-01", "--text", "真实警情")
    assert r2.returncode == 0, r2.stderr
    assert db.run_sync(lambda c: sorted(tuple(r) for r in c.execute(select(orders.c.incident_ref, orders.c.drill))))\
        == [("DRILL-9", True), ("INC-9", False)]
    db.engine.dispose()
    out = cli("order", "list", *env_args).stdout.splitlines()
    real_line = next(i for i, line in enumerate(out) if "INC-9" in line)
    drill_line = next(i for i, line in enumerate(out) if "DRILL-9" in line)
    assert real_line < drill_line and out[drill_line].startswith(DRILL_PREFIX) and DRILL_PREFIX not in out[real_line]
    assert any("drills (1), not real incidents" in line for line in out)
