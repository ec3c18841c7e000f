"""Caller history over a seeded month of calls: counts, marks and flags match what the test
computes from its own seed list; withheld numbers stay apart; the nuisance list is audited and
never blocks; the daily and monthly figures give valid-call rates and the flagged share.
Both backends."""
import json
import random
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest_twisted
import treq
from sqlalchemy import insert, select
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from adapters.api import ApiResource, Router
from adapters.apikeys import create_key_tx
from adapters.auth import Authenticator
from adapters.hotline_api import add_hotline_routes
from gateway.hotline import nuisance
from gateway.hotline.callers import HotlineSection, history_tx, is_withheld
from gateway.hotline.store import line_figures, month_figures
from gateway.storage.schema import audit_log, hotline_calls

UTC = timezone.utc
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)            # 20:00 in the center's time zone
START = NOW - timedelta(days=35)                          # five days more than the history looks at
NUMBERS = [f"1380576{i:04d}" for i in range(12)]
WITHHELD = [None, "anonymous", "Unknown", ""]


def seed_month(seed: int = 15):
    """(rows to insert, the same as plain tuples for the test's own arithmetic)."""
    rng = random.Random(seed)
    calls = []
    for i in range(400):
        number = rng.choice(NUMBERS[:4]) if rng.random() < 0.5 else rng.choice(NUMBERS + WITHHELD)
        at = START + timedelta(seconds=rng.randrange(int((NOW - START).total_seconds())))
        valid = rng.choice([True, False, False, None])
        category = None if valid is None else (rng.choice(["police", "fire"]) if valid else
                                               rng.choice(["prank", "silent", "misdial"]))
        calls.append((f"seed-{i}", rng.choice(["110", "119", "122"]), number, at, valid, category))
    # A number that called three times in the last hours, always a prank.
    for k in range(3):
        calls.append((f"pest-{k}", "110", "13905769999", NOW - timedelta(hours=k + 1), False, "prank"))
    return calls


def insert_calls(conn, calls):
    conn.execute(insert(hotline_calls), [
        dict(call_id=cid, line=line, caller=num, arrived_at=at, ended_at=at + timedelta(seconds=60),
             outcome="answered", answered_at=at + timedelta(seconds=5), valid=valid, category=cat,
             updated_at=at) for cid, line, num, at, valid, cat in calls])


def expected(calls, number, at, cfg=HotlineSection()):
    """The history, computed here from the seed list alone."""
    mine = [c for c in calls if c[2] == number and at - timedelta(days=30) < c[3] <= at]
    day = [c for c in mine if c[3] > at - timedelta(hours=24)]
    valid = [c for c in mine if c[4] is True]
    invalid = [c for c in mine if c[4] is False]
    flags = []
    if len(day) >= cfg.repeat_calls_24h:
        flags.append("repeat")
    if len(invalid) >= cfg.invalid_calls_30d and len(invalid) / max(1, len(valid) + len(invalid)) >= cfg.invalid_share_30d:
        flags.append("often_invalid")
    last = max(mine, key=lambda c: c[3]) if mine else None
    return {"calls_24h": len(day), "calls_30d": len(mine), "valid": len(valid), "invalid": len(invalid),
            "invalid_categories": dict(Counter(c[5] for c in invalid)), "flags": flags,
            "last": last[0] if last else None}


@pytest_twisted.inlineCallbacks
def test_history_of_every_number_over_a_seeded_month(database):
    calls = seed_month()
    yield database.run(insert_calls, calls)
    seen_flags = Counter()
    for number in NUMBERS + ["13905769999"]:
        h = yield database.run(history_tx, number, NOW)
        want = expected(calls, number, NOW)
        got = {"calls_24h": h["calls_24h"], "calls_30d": h["calls_30d"], "valid": h["marks"]["valid"],
               "invalid": h["marks"]["invalid"], "invalid_categories": h["marks"]["invalid_categories"],
               "flags": h["flags"], "last": h["last"]["call_id"] if h["last"] else None}
        assert got == want, number
        seen_flags.update(h["flags"])
    # the seed gives both flags and plain numbers, so the comparison above means something
    assert seen_flags["repeat"] >= 1 and seen_flags["often_invalid"] >= 1
    pest = yield database.run(history_tx, "13905769999", NOW)
    assert (pest["calls_24h"], pest["flag"]) == (3, "repeat,often_invalid")
    assert pest["marks"]["invalid_categories"] == {"prank": 3} and pest["last"]["call_id"] == "pest-0"
    # a call's own row is left out of its history
    own = yield database.run(history_tx, "13905769999", NOW, HotlineSection(), "pest-0")
    assert own["calls_24h"] == 2 and own["last"]["call_id"] == "pest-1"
    # thresholds come from the configuration
    lax = HotlineSection(repeat_calls_24h=5, invalid_calls_30d=10)
    assert (yield database.run(history_tx, "13905769999", NOW, lax))["flags"] == []


@pytest_twisted.inlineCallbacks
def test_withheld_and_unknown_numbers_are_never_merged(database):
    calls = seed_month()
    yield database.run(insert_calls, calls)
    assert sum(1 for c in calls if is_withheld(c[2])) > 20          # many withheld calls in the seed ...
    for number in WITHHELD:
        h = yield database.run(history_tx, number, NOW)
        assert h["withheld"] and h["calls_30d"] is None and h["flags"] == []   # ... counted as nobody's
    assert is_withheld("<unknown>") and is_withheld("Restricted") and not is_withheld("13805760000")


@pytest_twisted.inlineCallbacks
def test_figures_give_valid_rates_and_the_flagged_share(database):
    calls = seed_month()
    yield database.run(insert_calls, calls)
    # as the hotline service does for each call when it arrives: its flag is written on its row
    for cid, _line, number, at, _v, _c in sorted(calls, key=lambda c: c[3]):
        yield database.run(history_tx, number, at, HotlineSection(), cid, True)
    june = [c for c in calls if date(2026, 6, 1) <= (c[3] + timedelta(hours=8)).date() < date(2026, 7, 1)]
    figs = yield database.run(month_figures, 2026, 6, "Asia/Shanghai")
    for line in ("110", "119", "122"):
        mine = [c for c in june if c[1] == line]
        flagged = [c for c in mine if not is_withheld(c[2]) and expected(calls, c[2], c[3] - timedelta(microseconds=1))["flags"]]
        f = figs[line]
        assert f["calls"] == len(mine) and f["valid"] == sum(1 for c in mine if c[4] is True)
        assert f["valid_rate"] == round(f["valid"] / len(mine), 4)
        assert f["flagged"] == len(flagged) and f["flagged_share"] == round(len(flagged) / len(mine), 4)
    assert sum(figs[line]["flagged"] for line in figs) > 0
    day = yield database.run(line_figures, date(2026, 6, 30), "Asia/Shanghai")
    assert day["110"]["calls"] == sum(1 for c in calls if c[1] == "110"
                                      and (c[3] + timedelta(hours=8)).date() == date(2026, 6, 30))
    assert "valid_rate" in day["119"] and "flagged_share" in day["122"]


@pytest_twisted.inlineCallbacks
def test_nuisance_list_add_list_remove_audited(database):
    later = NOW + timedelta(days=7)
    e = yield database.run(nuisance.add, "+86 138-0576-0001", "反复谎报警情", "cli:王", NOW, later, True)
    assert e["number"] == "13805760001" and e["notice"]
    rows = yield database.run(nuisance.listing, NOW)
    assert [r["number"] for r in rows] == ["13805760001"]
    assert (yield database.run(nuisance.notice_keys, NOW)) == {"13805760001"}
    # expired: gone from the list and from the notice, kept in --all
    assert (yield database.run(nuisance.listing, later + timedelta(seconds=1))) == []
    assert len((yield database.run(nuisance.listing, later, True))) == 1
    h = yield database.run(history_tx, "13805760001", NOW)
    assert h["nuisance"]["reason"] == "反复谎报警情"
    n = yield database.run(nuisance.remove, "013805760001".lstrip("0"), "api:李", NOW)
    assert n == 1 and (yield database.run(nuisance.listing, NOW)) == []
    try:
        yield database.run(nuisance.remove, "13805760001", "api:李", NOW)
        raise AssertionError("removing twice must fail")
    except LookupError as err:
        assert "not on the nuisance list" in str(err)
    audit = yield database.run(lambda c: c.execute(select(audit_log.c.action, audit_log.c.actor, audit_log.c.subject)
                                                   .order_by(audit_log.c.id)).all())
    assert [tuple(a) for a in audit] == [("hotline.nuisance_add", "cli:王", "number 13805760001"),
                                         ("hotline.nuisance_remove", "api:李", "number 13805760001")]


@pytest_twisted.inlineCallbacks
def test_api_caller_history_and_nuisance(database):
    calls = seed_month()
    yield database.run(insert_calls, calls)
    changes = []

    class Fixed:
        def seconds(self):
            return NOW.timestamp()
    router = Router()
    add_hotline_routes(router, database, "Asia/Shanghai", clock=Fixed(), on_nuisance_change=lambda: changes.append(1))
    now = datetime.now(timezone.utc)
    read = yield database.run(create_key_tx, "wall", "read", now, "test")
    desk = yield database.run(create_key_tx, "desk-3", "dispatch", now, "test")
    root = Resource()
    root.putChild(b"api", ApiResource(router, Authenticator(reactor, database)))
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}/api/v1"

    def answer(d):
        return d.addCallback(lambda r: treq.json_content(r).addCallback(lambda b: (r.code, b)))

    def get(path, key=desk):
        return answer(treq.get(base + path, headers={"Authorization": f"Bearer {key}"}))

    def post(path, body, key=desk):
        return answer(treq.post(base + path, data=json.dumps(body).encode(),
                                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}))
    try:
        code, h = yield get("/hotline/callers/13905769999")
        assert code == 200 and h["flags"] == ["repeat", "often_invalid"] and h["calls_24h"] == 3
        code, h = yield get("/hotline/callers/13905769999", key=read)
        assert code == 200 and h["number"] == "****9999" and h["calls_24h"] == 3    # a read key sees the last four
        code, h = yield get("/hotline/callers/anonymous")
        assert code == 200 and h["withheld"] is True
        code, body = yield post("/hotline/nuisance", {"number": "13905769999", "reason": "恶作剧", "days": 3},
                                key=read)
        assert code == 403 and changes == []                       # a read key changes nothing
        code, body = yield post("/hotline/nuisance", {"number": "13905769999", "reason": "恶作剧", "by": "王"})
        assert code == 422 and body["field"] == "by"                # who did it is the key, never the body
        code, body = yield post("/hotline/nuisance", {"number": "13905769999", "reason": "恶作剧", "days": 3,
                                                      "notice": True})
        assert code == 201 and body["notice"] is True and changes == [1]
        code, body = yield post("/hotline/nuisance", {"number": "13905769999"})
        assert code == 422 and body["field"] == "reason"
        code, body = yield post("/hotline/nuisance", {"number": "1", "reason": "x"})
        assert code == 422 and body["field"] == "number" and "too few digits" in body["error"]
        code, body = yield post("/hotline/nuisance", {"number": "13905769999", "reason": "x", "days": 0})
        assert code == 422 and body["field"] == "days"
        code, h = yield get("/hotline/callers/13905769999")
        assert h["nuisance"]["reason"] == "恶作剧"
        code, body = yield get("/hotline/nuisance")
        assert [r["number"] for r in body["numbers"]] == ["13905769999"]
        code, body = yield post("/hotline/nuisance/13905769999/remove", {})
        assert code == 200 and body["removed"] == 1 and changes == [1, 1]
        code, body = yield post("/hotline/nuisance/13905769999/remove", {})
        assert code == 404 and body["field"] == "number"
        code, body = yield get("/hotline/figures?month=2026-06")
        assert code == 200 and body["month"] == "2026-06" and "valid_rate" in body["lines"]["110"]
        code, body = yield get("/hotline/figures?month=June")
        assert code == 422 and body["field"] == "month"
        audit = yield database.run(lambda c: c.execute(
            select(audit_log.c.action, audit_log.c.actor).where(audit_log.c.action.like("hotline.nuisance%"))
            .order_by(audit_log.c.id)).all())
        assert [tuple(a) for a in audit] == [("hotline.nuisance_add", "api:desk-3"),
                                             ("hotline.nuisance_remove", "api:desk-3")]
    finally:
        yield port.stopListening()
