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

    p = _leaf(sub, "stats", common, help="figures per line for a day")
    p.add_argument("--day", help="local day YYYY-MM-DD (default: today)")
    p.add_argument("--tz", default=DEFAULT_TZ)
    p.set_defaults(func=cmd_stats)

    p = _leaf(sub, "callbacks", common, help="unanswered calls (abandoned or cut off) to call back")
    p.add_argument("--done", metavar="CALL_ID", help="take a call off the list")
    p.add_argument("--by", help="who called back (with --done)")
    p.set_defaults(func=cmd_callbacks)
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
    day = _day(args)
    figs = _run(args, store.line_figures, day, args.tz)
    if args.json:
        print(_json({"day": day.isoformat(), "tz": args.tz, "lines": figs}))
        return 0
    print(f"Hotline figures for {day.isoformat()} ({args.tz})")
    print(f"{'line':<5} {'calls':>6} {'answered':>9} {'abandoned':>10} {'failed':>7} {'live':>5} "
          f"{'valid':>6} {'mean_s':>7} {'p90_s':>6}")
    for line, f in sorted(figs.items()):
        def n(v):
            return "-" if v is None else f"{v:g}"
        print(f"{line:<5} {f['calls']:>6} {f['answered']:>9} {f['abandoned']:>10} {f['failed']:>7} "
              f"{f['live']:>5} {f['valid']:>6} {n(f['answer_mean_s']):>7} {n(f['answer_p90_s']):>6}")
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
