"""`yihu order send|show|list|close`: the dispatcher's command line.

Runs without a reactor: each command is one transaction (Database.run_sync).  `order send`
commits the order whole (teams, queued deliveries, every escalation step); the running gateway
picks it up within its refresh period (escalation.refresh_seconds), sends it and chases it.
"""
from __future__ import annotations

import argparse
import getpass
import random
import sys
from datetime import datetime, timezone

from sqlalchemy import func, insert, select, update

from gateway.escalation.config import EscalationConfig
from gateway.escalation.deadlines import RULES, local_hhmm
from gateway.mode import DRILL_PREFIX
from gateway.orders.closing import close_order_tx
from gateway.orders.order import KINDS, OrderRequest, Target
from gateway.orders.store import NoTeams, create_order_tx
from gateway.orders.summary import load_summary_tx, render
from gateway.orders.team_state import STATE_WORD
from gateway.orders.times import utc
from gateway.storage.schema import audit_log, escalation_steps, order_teams, orders


def add_order_commands(subparsers, common=None) -> None:
    """Register `order send|show|list|close`; `common` is the CLI's parent parser (--config ...)."""
    parents = [common] if common is not None else []
    p = subparsers.add_parser("order", help="send an order to teams, follow it up")
    sub = p.add_subparsers(dest="order_command", required=True, metavar="ACTION")

    s = sub.add_parser("send", parents=parents, help="send an order (SMS, optionally a voice call) to teams")
    s.add_argument("--incident", required=True, help="incident reference (dispatch software's id)")
    s.add_argument("--kind", required=True, choices=KINDS,
                   help="stability (police chief commands on scene), rescue (deputy county head), "
                        "ordinary (head of the professional team)")
    s.add_argument("--text", required=True, help="the order's text")
    s.add_argument("--target", required=True,
                   help="all | kind:public,professional,expert | township:NAME[,NAME] | teams:CODE[,CODE]")
    s.add_argument("--rule", required=True, choices=RULES,
                   help="same_township: arrive in 20/30 min (day/night); leaving_city: assembled in 15/25 min")
    s.add_argument("--voice", action="store_true", help="also call commander and deputy (keypad answer)")
    s.add_argument("--major", action="store_true",
                   help="a major incident (重大突出事件): teams on scene report the situation every "
                        "orders.major_report_minutes; the leaders are informed")
    s.add_argument("--onscene-name", help="name of the on-scene commander, added to the role")
    s.add_argument("--idempotency-key", help="the same key never sends twice")
    s.add_argument("--drill", action="store_true",
                   help="an assembly drill on the real phones: every message starts with 【演练】, "
                        "its figures are kept apart from real incidents")
    s.add_argument("--by", default=None, help="who sends it (default: login name)")
    s.set_defaults(func=cmd_send)

    sh = sub.add_parser("show", parents=parents, help="the order summary: per team state, who answered, time taken, steps")
    sh.add_argument("code")
    sh.set_defaults(func=cmd_show)

    ls = sub.add_parser("list", parents=parents, help="open orders (--all: the latest 50 of any state)")
    ls.add_argument("--all", action="store_true")
    ls.set_defaults(func=cmd_list)

    cl = sub.add_parser("close", parents=parents, help="close an order: its escalation stops")
    cl.add_argument("code")
    cl.add_argument("--by", default=None)
    cl.set_defaults(func=cmd_close)


def _cfg(args) -> EscalationConfig:
    cfg = getattr(getattr(args, "config", None), "escalation", None)
    return cfg if isinstance(cfg, EscalationConfig) else EscalationConfig()


def _db(args):
    from gateway.storage import Database
    # run_sync only: no reactor, no thread pool; in drill mode every event it records says so
    return Database(None, args.database_url, drill=bool(getattr(getattr(args, "config", None), "drill", False)))


def _actor(args) -> str:
    return f"cli:{args.by or getpass.getuser()}"


def cmd_send(args) -> int:
    cfg = _cfg(args)
    try:
        req = OrderRequest(args.incident, args.kind, args.text, Target.parse(args.target), args.rule,
                           voice=args.voice, created_by=_actor(args), idempotency_key=args.idempotency_key,
                           onscene_name=args.onscene_name, major=args.major,
                           drill=args.drill or bool(getattr(args.config, "drill", False)))
    except ValueError as e:
        print(f"order not sent: {e}", file=sys.stderr)
        return 2
    db = _db(args)
    try:
        created = db.run_sync(create_order_tx, req, datetime.now(timezone.utc), cfg, random.SystemRandom())
    except (NoTeams, LookupError) as e:
        print(f"order not sent: {e}", file=sys.stderr)
        return 2
    finally:
        db.engine.dispose()
    word = "already sent (same idempotency key)" if created.existing else "committed"
    word = f"{DRILL_PREFIX}{word} as a DRILL" if req.drill else word
    print(f"{'major ' if req.major else ''}order {created.code} {word}: {len(created.team_ids)} teams; "
          f"on-scene commander: {req.onscene_commander()}")
    print(f"the running gateway sends it and chases silence; follow it with: yihu order show {created.code}")
    return 0


def cmd_show(args) -> int:
    cfg = _cfg(args)
    db = _db(args)
    try:
        s = db.run_sync(load_summary_tx, args.code, cfg)
    finally:
        db.engine.dispose()
    if s is None:
        print(f"no order {args.code}", file=sys.stderr)
        return 1
    print(render(s, cfg))
    return 0


def _list_tx(conn, all_):
    q = select(orders.c.id, orders.c.code, orders.c.incident_ref, orders.c.kind, orders.c.rule, orders.c.state,
               orders.c.created_at, orders.c.drill).order_by(orders.c.created_at.desc()).limit(50)
    if not all_:
        q = q.where(orders.c.state == "open")
    rows = conn.execute(q).all()
    counts = {}
    if rows:
        for oid, st, n in conn.execute(select(order_teams.c.order_id, order_teams.c.state, func.count())
                                       .where(order_teams.c.order_id.in_([r.id for r in rows]))
                                       .group_by(order_teams.c.order_id, order_teams.c.state)):
            counts.setdefault(oid, {})[st] = n
    return rows, counts


def cmd_list(args) -> int:
    cfg = _cfg(args)
    db = _db(args)
    try:
        rows, counts = db.run_sync(_list_tx, args.all)
    finally:
        db.engine.dispose()
    if not rows:
        print("no open orders")
    # Real incidents first, drills after and marked: their figures are never mixed.
    for drill in (False, True):
        shown = [r for r in rows if bool(r.drill) == drill]
        if drill and shown:
            print(f"{DRILL_PREFIX} drills ({len(shown)}), not real incidents:")
        for r in shown:
            c = counts.get(r.id, {})
            print(f"{DRILL_PREFIX if drill else ''}{r.code}  {local_hhmm(utc(r.created_at), cfg)}  {r.state:<6} "
                  f"{r.kind:<9} {r.rule:<13} {r.incident_ref:<16} "
                  + " ".join(f"{STATE_WORD.get(k, k)}{v}" for k, v in sorted(c.items())))
    return 0


def cmd_close(args) -> int:
    db = _db(args)
    try:
        c = db.run_sync(close_order_tx, args.code, _actor(args), datetime.now(timezone.utc))
    finally:
        db.engine.dispose()
    if c is None:
        print(f"no open order {args.code}", file=sys.stderr)
        return 1
    print(f"order {args.code} closed; cancelled: {c.escalation_steps_cancelled} pending escalation steps, "
          f"{c.sms_segments_cancelled} SMS segments not yet submitted, {c.call_attempts_cancelled} call "
          f"attempts not yet placed, {c.deliveries_cancelled} deliveries not yet handed on")
    return 0


def main(argv=None) -> int:
    """Stand-alone entry for trying the commands before the lead's `yihu` CLI hooks them in."""
    ap = argparse.ArgumentParser(prog="yihu")
    ap.add_argument("--database-url", required=True)
    sub = ap.add_subparsers(dest="command", required=True)
    add_order_commands(sub)
    args = ap.parse_args(argv)
    args.config = None
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
