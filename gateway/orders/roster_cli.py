"""`yihu roster check [--teams ...] [--voice]` and `yihu roster status CODE [--close]`.

Like `yihu order send`, the check is committed to the database and the running gateway sends it
(SMS, and calls with --voice) and records the replies; `status` reads who confirmed, who did not,
and which numbers failed, whenever asked (replies keep counting until the check is closed)."""
from __future__ import annotations

import random
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from gateway.orders.cli import _actor, _cfg, _db, close_order_tx
from gateway.orders.order import Target
from gateway.orders.store import NoTeams
from gateway.orders.roster_check import check_status_tx, create_check_tx, render_status


def add_roster_commands(subparsers, common=None) -> None:
    parents = [common] if common is not None else []
    p = subparsers.add_parser("roster", help="check that every commander's and deputy's number works")
    sub = p.add_subparsers(dest="roster_command", required=True, metavar="ACTION")
    c = sub.add_parser("check", parents=parents, help="send every commander and deputy a test asking to reply 1")
    c.add_argument("--teams", default="all", help="all (default), or team codes: PUB-07,PRO-05")
    c.add_argument("--voice", action="store_true", help="also call them (press 1 to confirm)")
    c.add_argument("--by", default=None, help="who runs the check (default: login name)")
    c.set_defaults(func=cmd_check)
    s = sub.add_parser("status", parents=parents, help="who confirmed, who did not, numbers that failed")
    s.add_argument("code")
    s.add_argument("--close", action="store_true", help="end the check (later replies no longer count)")
    s.add_argument("--by", default=None)
    s.set_defaults(func=cmd_status)


def _zone(args):
    config = getattr(args, "config", None)
    return ZoneInfo(config.gateway.time_zone if hasattr(config, "gateway") else "Asia/Shanghai")


def cmd_check(args) -> int:
    try:
        target = Target.parse("all" if args.teams == "all" else f"teams:{args.teams}")
    except ValueError as e:
        print(f"roster check not sent: --teams: {e}", file=sys.stderr)
        return 2
    db = _db(args)
    try:
        made = db.run_sync(create_check_tx, target, args.voice, datetime.now(timezone.utc), _cfg(args),
                           random.SystemRandom(), _actor(args))
    except (NoTeams, LookupError) as e:
        print(f"roster check not sent: {e}", file=sys.stderr)
        return 2
    finally:
        db.engine.dispose()
    print(f"roster check {made.code} committed: {made.people} commanders and deputies of {made.teams} teams "
          f"are asked to reply \"{made.code} 1\"" + (" or press 1 on the call" if args.voice else ""))
    print(f"the running gateway sends it; see the answers with: yihu roster status {made.code}")
    return 0


def cmd_status(args) -> int:
    db = _db(args)
    try:
        found = db.run_sync(check_status_tx, args.code)
        if found is not None and args.close and found[0].state == "open":
            db.run_sync(close_order_tx, args.code, _actor(args), datetime.now(timezone.utc))
            found = db.run_sync(check_status_tx, args.code)
    finally:
        db.engine.dispose()
    if found is None:
        print(f"no roster check {args.code}", file=sys.stderr)
        return 1
    print(render_status(*found, _zone(args)))
    return 0
