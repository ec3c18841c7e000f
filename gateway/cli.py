"""The `yihu` command.

    yihu run [--config FILE]            run the gateway (no file: the embedded default)
    yihu check-config --config FILE     validate a configuration and exit
    yihu db upgrade|downgrade|current   schema migrations
    yihu directory import FILE          import a roster (CSV or YAML), all or nothing
    yihu directory show                 teams with their commanders
    yihu modem pin PORT                 send the (corrected) SIM PIN once more on one modem
    yihu apikey create|list|revoke      keys for the HTTP API (read, dispatch, admin)
    yihu prompts build [--out DIR]      render the Mandarin voice prompts (espeak-ng + sox)
    yihu webhook add|list|remove        webhook subscribers besides webhooks.urls
    yihu report assessment --from D --to D   the teams' assessment (terminal, HTML, CSV)
    yihu drill [--teams ...] [--speed N]     an assembly drill on the emulators, with its report
    yihu drill sms --from PHONE TEXT | inbox PHONE   the emulated phones of a running gateway
    yihu roster check [--teams ...] [--voice] | status CODE [--close]   do the numbers work?

Exit status 2, with one line per problem and no traceback, for a bad configuration, an
unreachable database or a refused roster.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
from typing import Sequence

from sqlalchemy.exc import DatabaseError

from gateway import __version__
from gateway.config import Config, ConfigError, load_config, redact_url

EXIT_USAGE = 2


class Fatal(Exception):
    """A problem the operator must fix; printed as lines, exit status 2."""

    def __init__(self, *lines: str):
        self.lines = lines
        super().__init__("; ".join(lines))


def _load(args) -> Config:
    overrides = {}
    if getattr(args, "database_url", None):
        overrides.setdefault("gateway", {})["database_url"] = args.database_url
    if getattr(args, "log_format", None):
        overrides.setdefault("log", {})["format"] = args.log_format
    try:
        return load_config(args.config, overrides)
    except ConfigError as e:
        raise Fatal(*(f"config error: {p}" for p in e.problems)) from None


def _open_database(cfg: Config, *, migrate: bool = True) -> str:
    """Bring the schema to head (pre-reactor, so blocking is fine); Fatal if unreachable."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

    from gateway.storage.migrate import upgrade
    url = cfg.database_url
    try:
        if migrate:
            upgrade(url)
        else:
            from gateway.storage import make_engine
            engine = make_engine(url)
            with engine.connect():
                pass
            engine.dispose()
    except (OperationalError, DBAPIError) as e:
        reason = str(getattr(e, "orig", e)).strip().splitlines()
        reason = reason[0] if reason else e.__class__.__name__
        raise Fatal(f"database unreachable: {redact_url(url)} ({reason})") from None
    except (ArgumentError, NoSuchModuleError) as e:
        raise Fatal(f"gateway.database_url: unusable database URL {redact_url(url)} ({e})") from None
    except OSError as e:
        raise Fatal(f"database unreachable: {redact_url(url)} ({e.strerror or e})") from None
    except Exception as e:  # noqa: BLE001 - e.g. Alembic: a revision this version does not know
        if not migrate:
            raise
        reason = str(e).strip().splitlines()
        raise Fatal(f"database cannot be migrated: {redact_url(url)} ({e.__class__.__name__}: "
                    f"{reason[0] if reason else ''})") from None
    return url


# --- commands -------------------------------------------------------------------------------

def cmd_run(args) -> int:
    cfg = _load(args)
    from gateway.logs import start_logging
    start_logging(cfg.log.format, cfg.log.level)
    _hold_sqlite(cfg)
    _open_database(cfg)
    _claim_node_name(cfg)
    check_http_trust(cfg)
    if args.roster:
        _seed_roster(cfg, args.roster)
    from twisted.internet import reactor

    from gateway.service import stop_on_failure
    from gateway.wiring import build_service
    failed: list[str] = []

    def report(line: str) -> None:
        failed.append(line)
        print(f"yihu: cannot start: {line}", file=sys.stderr, flush=True)
    try:
        root = build_service(cfg, reactor)
        root.startService()
    except Exception as e:  # noqa: BLE001 - a part that raised while being built or started
        from twisted.python.failure import Failure
        from gateway.service import _reason
        raise Fatal(f"cannot start: {_reason(Failure(e))}") from None
    # Fail fast: a part that did not start (a port in use, a start that raised) stops the
    # gateway with status 2, and systemd starts it again; never a gateway half up.
    stop_on_failure(root, reactor, report)
    # Start-up objects live as long as the process: keep them out of the collector's full
    # passes, which otherwise stall the reactor (seen in the FastAGI and escalation benches).
    from gateway.heap import settle_after_start
    settle_after_start()
    reactor.addSystemEventTrigger("before", "shutdown", root.stopService)
    # reactor.run installs SIGINT/SIGTERM handlers that stop the reactor, which stops the
    # services (flushing what they accepted) before the database pool drains.
    reactor.run()
    return EXIT_USAGE if failed else 0


def _hold_sqlite(cfg: Config) -> None:
    """SQLite is single-node: a second gateway process on the same file is refused before it
    migrates or sends anything (the lock is held for the life of the process)."""
    from gateway.cluster.sqlite_lock import DatabaseInUse, hold
    try:
        hold(cfg.database_url)
    except DatabaseInUse as e:
        raise Fatal(f"cannot start: {e}") from None


def _claim_node_name(cfg: Config) -> None:
    """The node name is claimed before any part starts (pre-reactor, so blocking is fine): a second
    process under a live node's name must not touch that node's rows even for a moment."""
    import os
    import socket
    from datetime import datetime, timezone

    from gateway.cluster.node import NodeService
    from gateway.cluster.nodes import NodeNameTaken, register_tx
    from gateway.storage import make_engine
    engine = make_engine(cfg.database_url)
    host, pid = socket.gethostname(), os.getpid()
    try:
        with engine.begin() as conn:
            register_tx(conn, cfg.gateway.node_name, host, pid, datetime.now(timezone.utc),
                        cfg.cluster.node_timeout_s, NodeService.process_gone(host))
    except NodeNameTaken as e:
        raise Fatal(f"cannot start: node: NodeNameTaken: {e}") from None
    finally:
        engine.dispose()


def check_http_trust(cfg: Config) -> None:
    """Off loopback, the API is only ever behind keys: no key defined, no start."""
    from adapters.apikeys import any_active_key_tx
    from adapters.auth import is_loopback
    from gateway.storage import Database
    if is_loopback(cfg.http.interface):
        return
    db = Database(None, cfg.database_url)
    try:
        if db.run_sync(any_active_key_tx):
            return
    finally:
        db.engine.dispose()
    raise Fatal(f"http.interface {cfg.http.interface} is not loopback and no API key is defined; make one first: "
                "yihu apikey create --name NAME --scope admin")


def _seed_roster(cfg: Config, path: str) -> None:
    from sqlalchemy import func, select

    from gateway.directory.roster import RosterError, read_roster
    from gateway.directory.store import import_roster
    from gateway.storage import Database
    from gateway.storage.schema import teams
    db = Database(None, cfg.database_url)
    if db.run_sync(lambda c: c.execute(select(func.count()).select_from(teams)).scalar_one()):
        return
    try:
        roster = read_roster(path)
        db.run_sync(import_roster, roster, source=str(path), actor="system:seed")
    except RosterError as e:
        raise Fatal(*e.lines()) from None
    finally:
        db.engine.dispose()
    print(f"directory was empty: imported {len(roster.teams)} teams from {path}", file=sys.stderr)


def cmd_check_config(args) -> int:
    cfg = _load(args)
    _open_database(cfg, migrate=False)
    print(f"configuration OK: {args.config or '(embedded default)'}; {cfg.mode} mode ({cfg.mode_reason}); "
          f"database {redact_url(cfg.database_url)}")
    return 0


def cmd_db(args) -> int:
    cfg = _load(args)
    from gateway.storage import migrate
    if args.db_command == "upgrade":
        _open_database(cfg)
        print(f"database at {migrate.current(cfg.database_url)} (head {migrate.head()})")
    elif args.db_command == "downgrade":
        _open_database(cfg, migrate=False)
        migrate.downgrade(cfg.database_url, args.revision)
        print(f"database at {migrate.current(cfg.database_url)}")
    else:
        _open_database(cfg, migrate=False)
        print(f"database at {migrate.current(cfg.database_url)} (head {migrate.head()})")
    return 0


def _directory_db(cfg: Config):
    from gateway.storage import Database
    _open_database(cfg)
    return Database(None, cfg.database_url)


def cmd_directory_import(args) -> int:
    from gateway.directory.roster import RosterError, read_roster
    from gateway.directory.store import import_roster
    cfg = _load(args)
    try:
        roster = read_roster(args.file)
    except RosterError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        print(f"roster refused: {len(e.problems)} problem(s); nothing was imported", file=sys.stderr)
        return EXIT_USAGE
    db = _directory_db(cfg)
    try:
        summary = db.run_sync(import_roster, roster, source=str(args.file), actor=f"cli:{_user()}")
    except RosterError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        print("roster refused; nothing was imported", file=sys.stderr)
        return EXIT_USAGE
    finally:
        db.engine.dispose()
    s = summary
    print(f"imported {s.teams} teams, {s.members} members, {s.phones} phones; "
          f"{s.experts} experts in {s.expert_categories} categories"
          + (f"; {s.supervisors} duty supervisor shifts" if s.supervisors is not None else "")
          + (f"; {s.leaders} leaders" if s.leaders is not None else "")
          + (f"; {s.deactivated_teams} teams and {s.deactivated_members} members no longer listed (kept inactive)"
             if s.deactivated_teams or s.deactivated_members else ""))
    return 0


def cmd_directory_show(args) -> int:
    from gateway.directory.store import format_teams, list_teams
    cfg = _load(args)
    db = _directory_db(cfg)
    try:
        print(format_teams(db.run_sync(list_teams)))
        from gateway.directory.leaders import format_leaders
        print()
        print(db.run_sync(format_leaders))
    finally:
        db.engine.dispose()
    return 0


def _keys_db(args):
    from gateway.storage import Database
    return Database(None, _open_database(_load(args)))


def cmd_apikey(args) -> int:
    from datetime import datetime, timezone

    from adapters.apikeys import ApiKeyError, create_key_tx, list_keys_tx, revoke_key_tx
    db = _keys_db(args)
    now, actor = datetime.now(timezone.utc), f"cli:{_user()}"
    try:
        if args.apikey_command == "create":
            key = db.run_sync(create_key_tx, args.name, args.scope, now, actor)
            print(f"API key {args.name!r} (scope {args.scope}) created. It is shown once, here; only its hash "
                  "is kept. Send it as: Authorization: Bearer KEY", file=sys.stderr)
            print(key)
        elif args.apikey_command == "revoke":
            db.run_sync(revoke_key_tx, args.name, now, actor)
            print(f"API key {args.name!r} revoked")
        else:
            rows = db.run_sync(list_keys_tx)
            if not rows:
                print("no API keys (yihu apikey create --name NAME --scope read|dispatch|admin)")
            for r in rows:
                def when(t):
                    return t.isoformat(timespec="seconds") if t else "never"
                print(f"{r['name']:<24} {r['scope']:<8} created {when(r['created_at'])}  last used "
                      f"{when(r['last_used_at'])}" + (f"  REVOKED {when(r['revoked_at'])}" if r["revoked_at"] else ""))
    except ApiKeyError as e:
        raise Fatal(str(e)) from None
    finally:
        db.engine.dispose()
    return 0


def _user() -> str:
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or "unknown"


# --- parser ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", metavar="FILE", default=os.environ.get("YIHU_CONFIG"),
                        help="TOML configuration file (default: $YIHU_CONFIG, else the embedded default)")
    common.add_argument("--database-url", metavar="URL", help="override gateway.database_url")

    parser = argparse.ArgumentParser(prog="yihu", description="Yihu emergency telephony, SMS and IVR gateway")
    parser.add_argument("--version", action="version", version=f"yihu {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the gateway")
    run.add_argument("--log-format", choices=("text", "json"), help="override log.format")
    run.add_argument("--roster", metavar="FILE", help="import this roster at start when the directory is empty")
    run.set_defaults(func=cmd_run)

    chk = sub.add_parser("check-config", parents=[common], help="validate the configuration and the database URL")
    chk.set_defaults(func=cmd_check_config)

    db = sub.add_parser("db", help="schema migrations")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dbsub.add_parser("upgrade", parents=[common], help="upgrade to the newest schema").set_defaults(func=cmd_db)
    down = dbsub.add_parser("downgrade", parents=[common], help="downgrade (default: to empty)")
    down.add_argument("revision", nargs="?", default="base")
    down.set_defaults(func=cmd_db)
    dbsub.add_parser("current", parents=[common], help="show the schema revision").set_defaults(func=cmd_db)

    d = sub.add_parser("directory", help="teams, members and duty supervisors")
    dsub = d.add_subparsers(dest="directory_command", required=True, metavar="ACTION")
    imp = dsub.add_parser("import", parents=[common], help="import a roster file (CSV or YAML); all or nothing")
    imp.add_argument("file")
    imp.set_defaults(func=cmd_directory_import)
    dsub.add_parser("show", parents=[common], help="teams with their commanders, and the command structure (leaders)").set_defaults(func=cmd_directory_show)

    k = sub.add_parser("apikey", help="keys for the HTTP API: create (printed once), list, revoke")
    ksub = k.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    kc = ksub.add_parser("create", parents=[common], help="make a key; it is printed once, on the last line")
    kc.add_argument("--name", required=True, help="who uses it; recorded as the author of what it does")
    kc.add_argument("--scope", required=True, choices=("read", "dispatch", "admin"))
    kc.set_defaults(func=cmd_apikey)
    ksub.add_parser("list", parents=[common], help="name, scope, created, last used (never the key)") \
        .set_defaults(func=cmd_apikey)
    kr = ksub.add_parser("revoke", parents=[common], help="revoke a key at once")
    kr.add_argument("name")
    kr.set_defaults(func=cmd_apikey)

    for module, fn in (("gateway.orders.cli", "add_order_commands"), ("gateway.hotline.cli", "add_hotline_commands"),
                       ("gateway.ami.cli", "add_ami_commands"), ("ivr.prompts.cli", "add_prompt_commands"),
                       ("adapters.webhook_cli", "add_webhook_commands"), ("sms.cli", "add_modem_commands"),
                       ("gateway.reports.cli", "add_report_commands"), ("gateway.drill.cli", "add_drill_commands"),
                       ("gateway.orders.roster_cli", "add_roster_commands")):
        try:
            mod = __import__(module, fromlist=[fn])
        except ImportError:
            continue
        add = getattr(mod, fn)
        if len(inspect.signature(add).parameters) >= 2:
            add(sub, common)
        else:
            add(sub)
    return parser


def _prepare_part_command(args) -> None:
    """Commands registered by parts get the loaded config and a migrated database URL."""
    cfg = _load(args)
    args.config_path, args.config = args.config, cfg
    args.database_url = _open_database(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args.func, "__module__", __name__) != __name__ and hasattr(args, "config"):
            _prepare_part_command(args)
        return args.func(args) or 0
    except Fatal as e:
        for line in e.lines:
            print(f"yihu: {line}", file=sys.stderr)
        return EXIT_USAGE
    except DatabaseError as e:
        reason = str(getattr(e, "orig", e)).strip().splitlines()
        print(f"yihu: database error: {reason[0] if reason else e.__class__.__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
