"""``yihu hotline list|mark|stats|callbacks``: the call-takers' and supervisors' commands.

The lead's CLI calls ``add_hotline_commands(subparsers, common)``; every leaf command gets
``args.database_url`` from ``common`` and sets ``args.func(args) -> int``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date, datetime
from zoneinfo import ZoneInfo

from gateway.hotline import store

DEFAULT_TZ = os.environ.get("YIHU_TZ", "Asia/Shanghai")


def _parents(common) -> list:
    if common is None:
        return []
    if isinstance(common, argparse.ArgumentParser):
        return [common]
    if isinstance(common, (list, tuple)):
        return list(common)
    return []


def _leaf(sub, name, common, **kw):
    p = sub.add_parser(name, parents=_parents(common), **kw)
    if callable(common) and not isinstance(common, argparse.ArgumentParser):
        common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def add_hotline_commands(subparsers, common) -> argparse.ArgumentParser:
    """Register ``hotline list|mark|stats|callbacks`` under ``subparsers``.

    ``common``: a parent ArgumentParser (add_help=False) giving ``--database-url`` (or a list
    of parents, or a function that adds the common options to a parser)."""
    top = subparsers.add_parser("hotline", help="110/119/122 hotline calls")
    sub = top.add_subparsers(dest="hotline_command", metavar="{list,mark,stats,callbacks}")
    sub.required = True

    p = _leaf(sub, "list", common, help="list calls (newest first)")
    p.add_argument("--day", help="local day YYYY-MM-DD (default: today)")
    p.add_argument("--all-days", action="store_true", help="do not limit to one day")
    p.add_argument("--line", choices=["110", "119", "122"])
    p.add_argument("--outcome", choices=["answered", "abandoned_ivr", "abandoned_queue", "failed",
                                         "live"])
    p.add_argument("--tz", default=DEFAULT_TZ)
    p.add_argument("--limit", type=int, default=200)
    p.set_defaults(func=cmd_list)

    p = _leaf(sub, "mark", common, help="mark a call valid or invalid, with a category")
    p.add_argument("call_id")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--valid", dest="valid", action="store_true")
    g.add_argument("--invalid", dest="valid", action="store_false")
    p.add_argument("--category", required=True,
                   help="valid: " + ", ".join(store.VALID_CATEGORIES) + "; invalid: "
                        + ", ".join(store.INVALID_CATEGORIES) + " (others accepted)")
    p.add_argument("--by", required=True, help="who marks it (call-taker's name or number)")
    p.set_defaults(func=cmd_mark)

    p = _leaf(sub, "stats", common, help="figures per line for a day (or --month)")
    p.add_argument("--day", help="local day YYYY-MM-DD (default: today)")
    p.add_argument("--month", help="local month YYYY-MM instead of a day")
    p.add_argument("--tz", default=DEFAULT_TZ)
    p.set_defaults(func=cmd_stats)

    p = _leaf(sub, "callbacks", common, help="unanswered calls (abandoned or cut off) to call back")
    p.add_argument("--done", metavar="CALL_ID", help="take a call off the list")
    p.add_argument("--by", help="who called back (with --done)")
    p.set_defaults(func=cmd_callbacks)

    p = _leaf(sub, "caller", common, help="a number's history: calls in 24 h / 30 days, marks, flags")
    p.add_argument("number")
    p.set_defaults(func=cmd_caller)

    nz = sub.add_parser("nuisance", help="the nuisance list (never blocks a call; changes what call-takers see)")
    nsub = nz.add_subparsers(dest="nuisance_command", metavar="{add,list,remove}")
    nsub.required = True
    p = _leaf(nsub, "add", common, help="mark a number as nuisance (audited)")
    p.add_argument("number")
    p.add_argument("--reason", required=True)
    p.add_argument("--by", required=True, help="who marks it")
    p.add_argument("--days", type=float, help="expires after this many days (default: until removed)")
    p.add_argument("--notice", action="store_true",
                   help="the caller hears the nuisance notice at the overflow point instead of the usual message")
    p.set_defaults(func=cmd_nuisance_add)
    p = _leaf(nsub, "list", common, help="numbers on the list")
    p.add_argument("--all", action="store_true", help="also expired and removed entries")
    p.set_defaults(func=cmd_nuisance_list)
    p = _leaf(nsub, "remove", common, help="take a number off the list (audited)")
    p.add_argument("number")
    p.add_argument("--by", required=True)
    p.set_defaults(func=cmd_nuisance_remove)
    return top


# --- commands -------------------------------------------------------------------------------

def _run(args, fn, *a, **kw):
    from gateway.storage.pool import make_engine
    url = getattr(args, "database_url", None)
    if not url:
        raise SystemExit("no database URL (--database-url)")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return fn(conn, *a, **kw)
    finally:
        engine.dispose()


def _day(args) -> date:
    if getattr(args, "day", None):
        return date.fromisoformat(args.day)
    return datetime.now(ZoneInfo(args.tz)).date()


def _local(v, tz) -> str:
    if v is None:
        return "-"
    return v.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M:%S")


def _json(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True,
                      default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))


def cmd_list(args) -> int:
    day = None if args.all_days else _day(args)
    rows = _run(args, store.list_calls, day=day, tz=args.tz, line=args.line,
                outcome=args.outcome, limit=args.limit)
    if args.json:
        print(_json(rows))
        return 0
    tz = args.tz
    print(f"{'call_id':<22} {'line':<4} {'caller':<14} {'arrived':<14} {'answer_s':>8} "
          f"{'outcome':<15} {'call-taker':<22} {'valid':<6} category")
    for r in rows:
        wait = "-"
        if r["answered_at"] and r["arrived_at"]:
            wait = f"{(r['answered_at'] - r['arrived_at']).total_seconds():.0f}"
        valid = "-" if r["valid"] is None else ("yes" if r["valid"] else "no")
        print(f"{r['call_id']:<22} {r['line']:<4} {(r['caller'] or '?'):<14} "
              f"{_local(r['arrived_at'], tz):<14} {wait:>8} {(r['outcome'] or 'live'):<15} "
              f"{(r['call_taker'] or '-'):<22} {valid:<6} {r['category'] or '-'}")
    print(f"{len(rows)} call(s)")
    return 0


def cmd_mark(args) -> int:
    try:
        row = _run(args, store.mark_call, args.call_id, args.valid, args.category, args.by)
    except (LookupError, ValueError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    if args.json:
        print(_json(row))
    else:
        print(f"{row['call_id']}: {'valid' if row['valid'] else 'invalid'} ({row['category']}), "
              f"marked by {row['marked_by']}")
    return 0


def cmd_stats(args) -> int:
    if args.month:
        try:
            y, m = (int(x) for x in args.month.split("-"))
            date(y, m, 1)
        except ValueError:
            print(f"error: --month must be YYYY-MM, got {args.month!r}", file=sys.stderr)
            return 2
        period, figs = args.month, _run(args, store.month_figures, y, m, args.tz)
    else:
        day = _day(args)
        period, figs = day.isoformat(), _run(args, store.line_figures, day, args.tz)
    if args.json:
        print(_json({"period": period, "tz": args.tz, "lines": figs}))
        return 0
    print(f"Hotline figures for {period} ({args.tz})")
    print(f"{'line':<5} {'calls':>6} {'answered':>9} {'abandoned':>10} {'failed':>7} {'live':>5} "
          f"{'valid':>6} {'mean_s':>7} {'p90_s':>6} {'valid%':>7} {'flagged%':>9}")

    def n(v):
        return "-" if v is None else f"{v:g}"

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"
    for line, f in sorted(figs.items()):
        print(f"{line:<5} {f['calls']:>6} {f['answered']:>9} {f['abandoned']:>10} {f['failed']:>7} "
              f"{f['live']:>5} {f['valid']:>6} {n(f['answer_mean_s']):>7} {n(f['answer_p90_s']):>6} "
              f"{pct(f['valid_rate']):>7} {pct(f['flagged_share']):>9}")
    return 0


def _hotline_cfg(args):
    from gateway.hotline.callers import HotlineSection
    cfg = getattr(getattr(args, "config", None), "hotline", None)
    return cfg if isinstance(cfg, HotlineSection) else HotlineSection()


def _now():
    from datetime import timezone
    return datetime.now(timezone.utc)


def cmd_caller(args) -> int:
    from gateway.hotline.callers import history_tx
    h = _run(args, history_tx, args.number, _now(), _hotline_cfg(args))
    if args.json or h["withheld"]:
        print(_json(h))
        return 0
    m = h["marks"]
    print(f"{h['number']}: {h['calls_24h']} call(s) in 24 h, {h['calls_30d']} in 30 days; "
          f"marked valid {m['valid']}, invalid {m['invalid']}, unmarked {m['unmarked']}")
    if m["invalid_categories"]:
        print("  invalid: " + ", ".join(f"{k} {v}" for k, v in sorted(m["invalid_categories"].items())))
    if h["last"]:
        print(f"  last call: {_local(datetime.fromisoformat(h['last']['arrived_at']), DEFAULT_TZ)} line {h['last']['line']} "
              f"{h['last']['outcome'] or 'live'}")
    print(f"  flag: {h['flag'] or '-'}")
    if h["nuisance"]:
        print(f"  on the nuisance list: {h['nuisance']['reason']}")
    return 0


def cmd_nuisance_add(args) -> int:
    from datetime import timedelta

    from gateway.hotline import nuisance
    now = _now()
    expires = now + timedelta(days=args.days) if args.days else None
    try:
        e = _run(args, nuisance.add, args.number, args.reason, f"cli:{args.by}", now, expires, args.notice)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(_json(e))
    else:
        until = _local(e["expires_at"], DEFAULT_TZ) if e["expires_at"] else "until removed"
        print(f"{e['number']} on the nuisance list ({e['reason']}), {until}"
              f"{', with the recorded notice' if e['notice'] else ''}; calls still go to the call-takers")
    return 0


def cmd_nuisance_list(args) -> int:
    from gateway.hotline import nuisance
    rows = _run(args, nuisance.listing, _now(), args.all)
    if args.json:
        print(_json(rows))
        return 0
    for r in rows:
        state = "removed" if r["removed_at"] else ("until " + _local(r["expires_at"], DEFAULT_TZ)
                                                    if r["expires_at"] else "until removed")
        print(f"{r['number']:<16} {state:<22} {'notice' if r['notice'] else '':<7} {r['added_by']:<16} {r['reason']}")
    print(f"{len(rows)} number(s)")
    return 0


def cmd_nuisance_remove(args) -> int:
    from gateway.hotline import nuisance
    try:
        _run(args, nuisance.remove, args.number, f"cli:{args.by}", _now())
    except (LookupError, ValueError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    print(f"{args.number} taken off the nuisance list")
    return 0


def cmd_callbacks(args) -> int:
    if args.done:
        if not args.by:
            print("error: --by is required with --done", file=sys.stderr)
            return 2
        try:
            _run(args, store.mark_callback, args.done, args.by)
        except (LookupError, ValueError) as e:
            print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
            return 2
        print(f"{args.done}: called back by {args.by}")
        return 0
    rows = _run(args, store.callback_list)
    if args.json:
        print(_json(rows))
        return 0
    tz = DEFAULT_TZ
    print(f"{'call_id':<22} {'line':<4} {'caller':<14} {'arrived':<14} {'outcome':<15} "
          f"{'repeats':>7} note")
    for r in rows:
        notes = []
        if not r["can_call_back"]:
            notes.append("NO NUMBER")
        if r["answered_since"]:
            notes.append("got through later")
        print(f"{r['call_id']:<22} {r['line']:<4} {(r['caller'] or '?'):<14} "
              f"{_local(r['arrived_at'], tz):<14} {r['outcome']:<15} {r['repeats']:>7} "
              f"{', '.join(notes)}")
    print(f"{len(rows)} call(s) to call back")
    return 0
