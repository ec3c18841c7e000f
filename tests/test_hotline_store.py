"""hotline_calls: writing records, marking, the call-back list, figures per line and day,
and the `yihu hotline ...` commands (SQLite and PostgreSQL)."""
import argparse
import json
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select

from gateway.hotline import callback_list, line_figures, mark_call
from gateway.hotline.cli import add_hotline_commands
from gateway.hotline.store import get_call, mark_callback, open_calls, upsert_call
from gateway.hotline.tracker import HotlineCall
from gateway.storage.pool import make_engine
from gateway.storage.schema import audit_log

UTC = timezone.utc


def ts(s):  # local Beijing time -> epoch
    return datetime.fromisoformat(s + "+08:00").timestamp()


def call(cid, line, arrived, *, answered=None, outcome="answered", caller="13800000001",
         queue_joined=None, ended=None):
    return HotlineCall(call_id=cid, line=line, arrived_at=ts(arrived), caller=caller,
                       answered_at=ts(answered) if answered else None,
                       queue_joined_at=ts(queue_joined) if queue_joined else None,
                       ended_at=ts(ended or arrived), outcome=outcome, hangup_cause=16)


@pytest.fixture
def engine(migrated_url):
    e = make_engine(migrated_url)
    yield e
    e.dispose()


def run(engine, fn, *a, **kw):
    with engine.begin() as conn:
        return fn(conn, *a, **kw)


def seed(engine):
    calls = [
        call("a1", "110", "2026-11-30T08:00:00", answered="2026-11-30T08:00:05"),
        call("a2", "110", "2026-11-30T09:00:00", answered="2026-11-30T09:00:15"),
        call("a3", "110", "2026-11-30T10:00:00", answered="2026-11-30T10:00:40"),
        call("b1", "119", "2026-11-30T11:00:00", outcome="abandoned_ivr", caller="13900000002"),
        call("b2", "119", "2026-11-30T12:00:00", outcome="abandoned_queue", caller="13900000002",
             queue_joined="2026-11-30T12:00:10"),
        call("b3", "119", "2026-11-30T12:30:00", answered="2026-11-30T12:30:20",
             caller="13900000002"),
        call("c1", "122", "2026-11-30T23:59:00", outcome="abandoned_queue", caller=None),
        call("d1", "122", "2026-12-01T00:00:30", answered="2026-12-01T00:00:31"),  # next day
        call("e1", "110", "2026-11-29T23:59:59", answered="2026-11-30T00:00:09"),  # day before
    ]
    for c in calls:
        run(engine, upsert_call, c)


def test_upsert_inserts_then_updates_and_queues_callbacks(engine):
    live = HotlineCall(call_id="x1", line="119", arrived_at=ts("2026-11-30T08:00:00"),
                       caller="13800000009", uniqueid="x1")
    run(engine, upsert_call, live)
    assert run(engine, get_call, "x1")["outcome"] is None
    assert [c.call_id for c in run(engine, open_calls)] == ["x1"]
    live.outcome, live.ended_at = "abandoned_ivr", ts("2026-11-30T08:00:09")
    run(engine, upsert_call, live)
    r = run(engine, get_call, "x1")
    assert r["outcome"] == "abandoned_ivr" and r["callback_state"] == "pending"
    assert r["arrived_at"] == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    assert run(engine, open_calls) == []


def test_marking_is_kept_and_audited_and_never_overwritten_by_the_tracker(engine):
    seed(engine)
    r = run(engine, mark_call, "a1", True, "traffic", "call-taker 07")
    assert (r["valid"], r["category"], r["marked_by"]) == (True, "traffic", "call-taker 07")
    run(engine, upsert_call, call("a1", "110", "2026-11-30T08:00:00",
                                  answered="2026-11-30T08:00:05"))
    assert run(engine, get_call, "a1")["category"] == "traffic"
    with engine.begin() as conn:
        (a,) = conn.execute(select(audit_log)).all()
    assert a.action == "hotline.mark" and a.subject == "a1" and a.actor == "call-taker 07"
    with pytest.raises(LookupError):
        run(engine, mark_call, "nope", False, "prank", "x")
    with pytest.raises(ValueError):
        run(engine, mark_call, "a1", False, "", "x")


def test_line_figures_for_a_local_day(engine):
    seed(engine)
    run(engine, mark_call, "a1", True, "traffic", "ct")
    run(engine, mark_call, "a2", False, "prank", "ct")
    f = run(engine, line_figures, date(2026, 11, 30), "Asia/Shanghai")
    assert f["110"]["calls"] == 3 and f["110"]["answered"] == 3
    assert f["110"]["valid"] == 1 and f["110"]["invalid"] == 1 and f["110"]["unmarked"] == 1
    assert f["110"]["answer_mean_s"] == 20.0 and f["110"]["answer_p90_s"] == 40.0
    assert f["119"]["calls"] == 3 and f["119"]["abandoned"] == 2
    assert f["119"]["abandoned_ivr"] == 1 and f["119"]["abandoned_queue"] == 1
    assert f["119"]["answer_mean_s"] == 20.0
    assert f["122"]["calls"] == 1 and f["122"]["answer_mean_s"] is None
    utc = run(engine, line_figures, date(2026, 11, 30), "UTC")
    # The day follows the time zone: in UTC, d1 (00:00:30 on Dec 1 in Beijing) is Nov 30.
    assert utc["122"]["calls"] == 2 and utc["110"]["calls"] == 3
    assert run(engine, line_figures, date(2026, 12, 1), "Asia/Shanghai")["122"]["calls"] == 1


def test_callback_list_flags_repeats_and_later_answers(engine):
    seed(engine)
    rows = run(engine, callback_list)
    assert [r["call_id"] for r in rows] == ["b1", "b2", "c1"]
    b1 = rows[0]
    assert b1["repeats"] == 2 and b1["answered_since"] is True and b1["can_call_back"]
    assert rows[2]["can_call_back"] is False
    run(engine, mark_callback, "b1", "ct 03")
    assert [r["call_id"] for r in run(engine, callback_list)] == ["b2", "c1"]
    with pytest.raises(ValueError):
        run(engine, mark_callback, "a1", "ct")      # answered: never on the list


def cli(migrated_url, *argv):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", default=migrated_url)
    ap = argparse.ArgumentParser(prog="yihu")
    sub = ap.add_subparsers(dest="command")
    add_hotline_commands(sub, common)
    args = ap.parse_args(list(argv))
    return args.func(args)


def test_cli_commands(engine, migrated_url, capsys):
    seed(engine)
    assert cli(migrated_url, "hotline", "mark", "b3", "--valid", "--category", "rescue",
               "--by", "ct 01") == 0
    assert "b3: valid (rescue), marked by ct 01" in capsys.readouterr().out
    assert cli(migrated_url, "hotline", "mark", "zz", "--invalid", "--category", "prank",
               "--by", "ct") == 2
    capsys.readouterr()
    assert cli(migrated_url, "hotline", "stats", "--day", "2026-11-30", "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["lines"]["119"]["valid"] == 1 and stats["lines"]["110"]["answer_p90_s"] == 40.0
    assert cli(migrated_url, "hotline", "stats", "--day", "2026-11-30") == 0
    assert "110" in capsys.readouterr().out
    assert cli(migrated_url, "hotline", "list", "--day", "2026-11-30", "--line", "119") == 0
    out = capsys.readouterr().out
    assert "3 call(s)" in out and "abandoned_queue" in out
    assert cli(migrated_url, "hotline", "callbacks") == 0
    assert "NO NUMBER" in capsys.readouterr().out
    assert cli(migrated_url, "hotline", "callbacks", "--done", "b2", "--by", "ct 02") == 0
    capsys.readouterr()
    assert cli(migrated_url, "hotline", "callbacks", "--json") == 0
    assert [r["call_id"] for r in json.loads(capsys.readouterr().out)] == ["b1", "c1"]


def test_calls_cut_off_by_the_pbx_are_failed_in_the_figures_but_called_back(engine):
    """Through the tracker: a citizen hanging up (cause 16), Asterisk cutting a caller off
    (cause 0), and a call closed by the resync after an AMI outage."""
    from gateway.ami.link import ResyncSnapshot
    from gateway.hotline.tracker import HotlineTracker
    now = [ts("2026-11-30T10:00:00")]
    written = []
    t = HotlineTracker(lambda c, kinds: written.append(c.copy()), clock=lambda: now[0])

    def arrive(uid, caller):
        c = {"Channel": f"PJSIP/trunk-{uid}", "CallerIDNum": caller, "Context": "hotline",
             "Exten": "119", "Uniqueid": uid, "Linkedid": uid, "ChanVariable": ["HOTLINE=119"]}
        t.handle({"Event": "Newchannel", **c})
        t.handle({"Event": "Newexten", **c, "Application": "Queue", "AppData": "calltakers"})
        return c
    gave_up, cut, lost = (arrive("9.1", "13900000011"), arrive("9.2", "13900000012"),
                          arrive("9.3", "13900000013"))
    t.handle({"Event": "Hangup", **gave_up, "Cause": "16", "Cause-txt": "Normal Clearing"})
    t.handle({"Event": "Hangup", **cut, "Cause": "0", "Cause-txt": "Unknown"})
    token = t.resync_begin()
    now[0] += 30
    t.resync_end(token, ResyncSnapshot(at=now[0], channels=[], queue_events=[], reconnect=True))
    for c in written:
        run(engine, upsert_call, c)
    outcomes = {r["call_id"]: r["outcome"] for r in run(engine, callback_list)}
    assert outcomes == {"9.1": "abandoned_queue", "9.2": "failed", "9.3": "failed"}
    f = run(engine, line_figures, date(2026, 11, 30))["119"]
    assert (f["calls"], f["abandoned"], f["abandoned_queue"], f["failed"]) == (3, 1, 1, 2)
