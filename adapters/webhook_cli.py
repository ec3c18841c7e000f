"""`yihu webhook add|list|remove`: the subscribers beside those of webhooks.urls.

Runs without a reactor, one transaction per command.  A running gateway picks a change up
within webhooks.refresh_s.  A secret is read from a file or standard input (never from the
command line, which other users and the shell history can read) and never printed.
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone

from adapters import webhook_store as store
from adapters.webhooks import check_url, target_name


def add_webhook_commands(subparsers, common=None) -> None:
    parents = [common] if common is not None else []
    p = subparsers.add_parser("webhook", help="webhook subscribers (besides webhooks.urls)")
    sub = p.add_subparsers(dest="webhook_command", required=True, metavar="ACTION")

    a = sub.add_parser("add", parents=parents, help="add a subscriber; it gets the events committed from now on")
    a.add_argument("url")
    a.add_argument("--secret-file", metavar="FILE",
                   help="its own HMAC key, read from FILE ('-': standard input); default: webhooks.secret")
    a.add_argument("--from-event", type=int, metavar="ID",
                   help="deliver the events after this id (still in the log) instead of from now on")
    a.set_defaults(func=cmd_add)

    ls = sub.add_parser("list", parents=parents, help="subscribers: position, events behind, dead letters")
    ls.set_defaults(func=cmd_list)

    rm = sub.add_parser("remove", parents=parents, help="remove a subscriber added with `webhook add`")
    rm.add_argument("url")
    rm.set_defaults(func=cmd_remove)


def _db(args):
    from gateway.storage import Database
    return Database(None, args.database_url)      # run_sync only: no reactor, no thread pool


def _read_secret(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as e:
        raise SystemExit(f"yihu: --secret-file {path}: {e.strerror}")
    secret = text.strip()
    if len(secret) < 16:
        raise SystemExit(f"yihu: --secret-file {path}: the secret must be at least 16 characters")
    return secret


def cmd_add(args) -> int:
    try:
        url = check_url(args.url)
    except ValueError as e:
        print(f"yihu: webhook {e}", file=sys.stderr)
        return 2
    if args.from_event is not None and args.from_event < 0:
        print("yihu: --from-event must be 0 or more", file=sys.stderr)
        return 2
    secret = _read_secret(args.secret_file)
    db = _db(args)
    try:
        sub = db.run_sync(store.add_tx, url, secret, datetime.now(timezone.utc), args.from_event)
    except store.SubscriberExists:
        print(f"yihu: webhook {target_name(url)} is already a subscriber", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"yihu: --from-event: {e}", file=sys.stderr)
        return 2
    finally:
        db.engine.dispose()
    signed = "its own secret" if secret else ("webhooks.secret" if args.config.webhooks.secret else "UNSIGNED")
    print(f"webhook {target_name(url)} added: events after #{sub.cursor}, signed with {signed}")
    return 0


def cmd_list(args) -> int:
    db = _db(args)
    try:
        rows = db.run_sync(store.status_tx, bool(args.config.webhooks.secret))
    finally:
        db.engine.dispose()
    if not rows:
        print("no webhook subscribers")
    for r in rows:
        state = (f"failing since {r.failing_since:%Y-%m-%d %H:%M:%S}Z ({r.last_error})" if r.failing_since
                 else f"delivered {r.delivered_at:%Y-%m-%d %H:%M:%S}Z" if r.delivered_at else "nothing delivered yet")
        print(f"{target_name(r.url)}  [{r.source}, {r.signed_by}]  after #{r.cursor}, {r.behind} behind, "
              f"{r.dead_letters} dead letters; {state}")
    return 0


def cmd_remove(args) -> int:
    if args.url in args.config.webhooks.urls:
        print(f"yihu: webhook {target_name(args.url)} is in webhooks.urls: remove it from the configuration file",
              file=sys.stderr)
        return 2
    db = _db(args)
    try:
        removed = db.run_sync(store.remove_tx, args.url)
    finally:
        db.engine.dispose()
    if not removed:
        print(f"yihu: no webhook subscriber {target_name(args.url)}", file=sys.stderr)
        return 2
    print(f"webhook {target_name(args.url)} removed")
    return 0

