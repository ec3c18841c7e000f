"""The roster decides who is called: a team or member left out of the last import is never
targeted (all, kind, township, teams), reminded or escalated to; its phones are released and a
reply from one is refused like a stranger's; an order to a team with no active commander is
refused at creation (API 422 naming the team, CLI exit 2)."""
from datetime import timedelta

import pytest
import pytest_twisted
from sqlalchemy import select, update

from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.orders.order import OrderRequest, Target
from gateway.storage.schema import deliveries, escalation_steps, inbound_raw, members, order_teams, teams
from tests._orders_rig import Rig, local

T0 = local(2026, 3, 2, 10, 0)


def roster_text(*codes):
    """Teams A (白塔镇), B (白塔镇), C (横溪镇): all public; phones in the drama range."""
    spec = {"A": ("白塔镇", 1), "B": ("白塔镇", 2), "C": ("横溪镇", 3)}
    out = ["teams:"]
    for c in codes:
        town, n = spec[c]
        out += [f"  - code: T-{c}", f"    name: 队{c}", "    kind: public", f"    township: {town}",
                "    township_class: 1", "    members:",
                f'      - {{name: 指挥{c}, role: commander, phones: ["+44 7700 900{n}01"]}}',
                f'      - {{name: 副指挥{c}, role: deputy, phones: ["+44 7700 900{n}02"]}}']
    out += ["duty_supervisors:",
            '  - {name: 值班长, phone: "+44 7700 900900", starts_at: "2026-01-01T00:00:00+08:00", '
            'ends_at: "2027-01-01T00:00:00+08:00"}']
    return "\n".join(out) + "\n"


COMMANDER_B, DEPUTY_B = "+447700900201", "+447700900202"


def load(db, tmp_path, *codes):
    path = tmp_path / f"roster-{''.join(codes)}.yaml"
    path.write_text(roster_text(*codes), encoding="utf-8")
    return db.run(import_roster, read_roster(path), source=str(path), actor="test")


def send(rig, target):
    return rig.orders.send(OrderRequest("INC-9", "rescue", "白塔镇山体滑坡", Target.parse(target), "same_township",
                                        created_by="cli:test"))


def team_codes_tx(conn, order_id):
    return sorted(conn.execute(select(teams.c.code).join(order_teams, order_teams.c.team_id == teams.c.id)
                               .where(order_teams.c.order_id == order_id)).scalars())


@pytest_twisted.inlineCallbacks
def test_a_removed_team_is_never_targeted_and_its_old_phone_is_a_strangers(database, tmp_path):
    yield load(database, tmp_path, "A", "B", "C")
    summary = yield load(database, tmp_path, "A", "C")           # team B leaves the roster
    assert summary.deactivated_teams == 1 and summary.deactivated_members == 2
    rig = Rig(database, T0)
    yield rig.start()
    try:
        for target, expected in (("all", ["T-A", "T-C"]), ("kind:public", ["T-A", "T-C"]),
                                 ("township:白塔镇", ["T-A"])):
            created = yield send(rig, target)
            assert (yield database.run(team_codes_tx, created.order_id)) == expected, target
        with pytest.raises(LookupError, match="T-B is no longer on the roster"):
            yield send(rig, "teams:T-A,T-B")
        yield rig.fanout.send(created.order_id)
        yield rig.fanout.settle()
        assert rig.outbox.to(COMMANDER_B) == [] and rig.outbox.to(DEPUTY_B) == []
        # B's old commander answers the order of team A's township as if still on the roster
        out, raw_id = yield rig.sms(COMMANDER_B, f"{created.code} 到达")
        assert not out.accepted
        raw = yield database.run(lambda c: c.execute(select(inbound_raw.c.state, inbound_raw.c.note)
                                                     .where(inbound_raw.c.id == raw_id)).one())
        assert raw.state == "refused" and "not on the roster" in raw.note
        assert rig.outbox.to(COMMANDER_B) == []                  # a stranger gets no answer
    finally:
        rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_team_removed_after_the_order_is_neither_sent_reminded_nor_escalated_to(database, tmp_path):
    yield load(database, tmp_path, "A", "B")
    rig = Rig(database, T0)
    yield rig.start()
    try:
        # committed by the CLI (another process), not yet handed to the modems by the gateway
        from random import Random

        from gateway.orders.store import create_order_tx
        created = yield database.run(create_order_tx, OrderRequest(
            "INC-9", "rescue", "白塔镇山体滑坡", Target.parse("all"), "same_township", created_by="cli:test"),
            rig.now(), rig.cfg, Random(1))
        yield load(database, tmp_path, "A")                      # B removed before the fan-out ran
        yield rig.fanout.send(created.order_id)
        yield rig.fanout.settle()
        yield rig.advance_to(T0 + timedelta(seconds=5))           # the engine picks up the CLI's steps
        yield rig.advance_to(T0 + timedelta(minutes=15))          # the whole receipt ladder
        assert rig.outbox.to(COMMANDER_B) == [] and rig.outbox.to(DEPUTY_B) == []
        assert [c for c in rig.caller.calls if c["phone"] in (COMMANDER_B, DEPUTY_B)] == []
        assert rig.outbox.to("+447700900101", "order")            # team A did get it, and is chased
        assert len(rig.outbox.to("+447700900101")) > 1
        rows = yield database.run(lambda c: c.execute(
            select(escalation_steps.c.state, escalation_steps.c.reason)
            .join(order_teams, order_teams.c.id == escalation_steps.c.order_team_id)
            .join(teams, teams.c.id == order_teams.c.team_id).where(teams.c.code == "T-B")).all())
        fired = [r for r in rows if r.state != "pending"]
        assert fired and all(r.state == "cancelled" and r.reason == "team removed from the roster" for r in fired)
        b_sms = yield database.run(lambda c: c.execute(
            select(deliveries.c.state, deliveries.c.detail).where(deliveries.c.phone == COMMANDER_B)).all())
        assert b_sms and all(r.state == "failed" and "removed from the roster" in r.detail for r in b_sms)
        alerts = [t for t in rig.outbox.purposes("supervisor")]
        assert alerts and all("队B" not in a["text"] for a in alerts)
    finally:
        rig.stop()


def _without_commander(conn, code):
    conn.execute(update(members).where(members.c.role == "commander",
                                       members.c.team_id == select(teams.c.id).where(teams.c.code == code)
                                       .scalar_subquery()).values(active=False))


@pytest_twisted.inlineCallbacks
def test_an_order_to_a_team_without_an_active_commander_is_refused_with_422_naming_it(database, tmp_path):
    from adapters.api import ApiError, ApiRequest, Router
    from adapters.auth import Principal
    from adapters.orders_api import add_order_routes
    yield load(database, tmp_path, "A", "B")
    yield database.run(_without_commander, "T-B")
    rig = Rig(database, T0)
    yield rig.start()
    try:
        router = Router()
        add_order_routes(router, database, rig.orders, rig.clock)
        route, params = router.match("POST", "/orders")
        body = {"incident_ref": "I-1", "kind": "rescue", "text": "速到", "target": "all", "rule": "same_township"}
        with pytest.raises(ApiError) as e:
            yield route.handler(ApiRequest("POST", "/orders", params, {}, body, {}, Principal("desk", "dispatch")))
        assert e.value.status == 422 and "T-B" in e.value.message and "commander" in e.value.message
        assert e.value.detail == {"field": "target", "teams": ["T-B"]}
    finally:
        rig.stop()


def test_the_cli_refuses_it_with_exit_2(migrated_url, tmp_path, capsys):
    from gateway.storage import Database
    from tests.test_orders_cli import run
    db = Database(None, migrated_url)
    path = tmp_path / "r.yaml"
    path.write_text(roster_text("A", "B"), encoding="utf-8")
    db.run_sync(import_roster, read_roster(path), source="r", actor="test")
    db.run_sync(_without_commander, "T-B")
    db.engine.dispose()
    assert run(migrated_url, "order", "send", "--incident", "I", "--kind", "rescue", "--text", "t",
               "--target", "teams:T-A,T-B", "--rule", "same_township") == 2
    err = capsys.readouterr().err
    assert "T-B" in err and "no active commander" in err
