"""`yihu drill`: an assembly drill on the embedded emulators, with its report; `yihu drill sms`
and `yihu drill inbox`: a person's hands on the emulated phones of a running embedded gateway.

    yihu drill [--teams all|CODE,CODE] [--speed N] [--minutes M] [--seed S] [--silent K]
    yihu drill sms --from PHONE TEXT        a commander's reply into the running gateway
    yihu drill inbox PHONE                  what that emulated phone received
"""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_ROSTER = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "roster.yaml"


def add_drill_commands(subparsers, common=None) -> None:
    parents = [common] if common is not None else []
    p = subparsers.add_parser("drill", parents=parents, help="an assembly drill on the emulators, with its report")
    p.add_argument("--teams", default="all", help="all (default), or team codes: PUB-07,PRO-05")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)")
    p.add_argument("--minutes", type=float, help="how long the drill runs, simulated (default: the arrival "
                                                 "deadline plus 10)")
    p.add_argument("--seed", type=int, default=1, help="the same seed, the same simulated people")
    p.add_argument("--silent", type=int, default=2, help="teams that never answer (escalation runs)")
    p.add_argument("--citizens-per-hour", type=float, default=30.0, help="hotline calls per simulated hour")
    p.add_argument("--out", metavar="DIR", help="where the report's HTML and CSV go (default DATA_DIR/reports)")
    p.set_defaults(func=cmd_drill)
    sub = p.add_subparsers(dest="drill_command", metavar="ACTION")
    s = sub.add_parser("sms", parents=parents, help="a commander's SMS into the running gateway in drill mode")
    s.add_argument("--from", dest="sender", required=True, metavar="PHONE")
    s.add_argument("text")
    s.add_argument("--url", help="the gateway (default: http://HTTP.INTERFACE:HTTP.PORT)")
    s.add_argument("--key", help="an API key (dispatch scope); not needed on the open embedded default")
    s.set_defaults(func=cmd_sms)
    i = sub.add_parser("inbox", parents=parents, help="what an emulated phone received")
    i.add_argument("phone")
    i.add_argument("--url", help="the gateway (default: http://HTTP.INTERFACE:HTTP.PORT)")
    i.add_argument("--key", help="an API key (read scope shows numbers masked)")
    i.set_defaults(func=cmd_inbox)


# --- the hands on the phones ----------------------------------------------------------------------

def _url(args) -> str:
    if args.url:
        return args.url.rstrip("/")
    http = args.config.http
    host = "127.0.0.1" if http.interface in ("0.0.0.0", "::", "") else http.interface
    return f"{'https' if http.tls_cert else 'http'}://{host}:{http.port}"


def _call(args, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"
    req = urllib.request.Request(_url(args) + path, method=method, headers=headers,
                                 data=json.dumps(body, ensure_ascii=False).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {"error": e.reason}
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SystemExit(f"yihu drill: no gateway at {_url(args)} ({reason}); start it with scripts/run "
                         "(drill mode, the embedded default), or pass --url")


def cmd_sms(args) -> int:
    status, body = _call(args, "POST", "/emulator/sms", {"from": args.sender, "text": args.text})
    if status != 202:
        print(f"not sent ({status}): {body.get('error')}", file=sys.stderr)
        return 1 if status >= 500 else 2
    print(f"{body['from']} -> gateway (via emulated modem {body['modem']}): {args.text}")
    print(f"its confirmation shows in: yihu drill inbox {body['from']}")
    return 0


def cmd_inbox(args) -> int:
    from urllib.parse import quote
    status, body = _call(args, "GET", f"/emulator/inbox/{quote(args.phone, safe='')}")
    if status != 200:
        print(f"no inbox ({status}): {body.get('error')}", file=sys.stderr)
        return 2
    print(f"{body['phone']}: {len(body['messages'])} message(s)")
    for m in body["messages"]:
        print(("  " if m["copies"] == 1 else f"x{m['copies']} ") + m["text"])
    return 0


# --- the drill ------------------------------------------------------------------------------------

def cmd_drill(args) -> int:
    from twisted.internet import reactor

    from gateway.cli import Fatal, _seed_roster
    from gateway.orders.order import Target
    cfg = args.config
    if not cfg.drill:
        raise Fatal(f"a drill runs on the emulators, but this configuration is live ({cfg.mode_reason}): "
                    "set gateway.mode = \"drill\", or run without a configuration (the embedded default)")
    if args.speed <= 0 or args.speed > 600:
        raise Fatal(f"--speed must be above 0 and at most 600, got {args.speed:g}")
    try:
        target = Target.parse("all" if args.teams == "all" else f"teams:{args.teams}")
    except ValueError as e:
        raise Fatal(f"--teams: {e}") from None
    _seed_roster(cfg, str(DEFAULT_ROSTER))
    from gateway.logs import start_logging
    start_logging(cfg.log.format, "error")        # the terminal is the progress line's
    outcome = {}
    reactor.callWhenRunning(_drill, reactor, cfg, args, target, outcome)
    reactor.run()
    return outcome.get("status", 1)


def _drill(reactor, cfg, args, target, outcome):
    from twisted.internet import defer, task

    from gateway.drill import report as drill_report
    from gateway.drill.clock import ScaledClock
    from gateway.drill.people import plan_drill
    from gateway.drill.runner import DrillRun, drill_config, pairs_tx
    from gateway.escalation.deadlines import response_minutes
    from gateway.orders.times import now
    from gateway.wiring import build_service
    clock = ScaledClock(reactor, args.speed)
    gw = build_service(drill_config(cfg, args.speed), reactor=clock)
    gw.startService()
    holder = {}

    def line(text):
        """One line rewritten in place on a terminal; one line per minute into a file or pipe."""
        if sys.stdout.isatty():
            print("\r" + text + "   ", end="", flush=True)
        else:
            print(text, flush=True)

    @defer.inlineCallbacks
    def run():
        for _ in range(300):        # up to 30 s (real) for the emulated modems and Asterisk
            if gw.ami_link.connected and any(s.driver.healthy for s in gw.sms_bank.slots.values()):
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        else:
            raise RuntimeError("the emulated modems or Asterisk did not come up within 30 s")
        pairs = yield gw.database.run(pairs_tx, target.how, tuple(target.values))
        limit = response_minutes("same_township", now(clock), cfg.escalation)
        minutes = args.minutes or limit + 10
        plan = plan_drill(pairs, args.seed, minutes, limit, silent=args.silent,
                          citizens_per_hour=args.citizens_per_hour)
        out = Path(args.out) if args.out else cfg.data_dir / "reports"
        drill = DrillRun(gw, clock, plan, target, out, cfg.escalation, cfg.gateway.time_zone, progress=line)
        holder["run"] = drill
        code = yield drill.start()
        print(f"演练开始：指令 {code}，{len(plan.teams)} 支队伍，{minutes:g} 分钟（模拟），速度 {args.speed:g}x；"
              f"墙屏 http://{cfg.http.interface}:{cfg.http.port}/board；Ctrl-C 提前结束并出报告")
        report = yield drill.done
        return report

    def shown(report):
        print()
        if report is not None:
            print(drill_report.text(report))
            print(f"\nHTML: {holder['run'].files[0]}\nCSV:  {holder['run'].files[1]}")
            outcome["status"] = 0
        _stop(reactor)

    def failed(f):
        print(f"\nyihu drill: {f.getErrorMessage()}", file=sys.stderr)
        outcome["status"] = 1
        _stop(reactor)

    run().addCallbacks(shown, failed)

    def before_shutdown():
        """Ctrl-C (or the end): the report first, then the gateway stops (what it took is committed)."""
        drill = holder.get("run")
        d = drill.finish(interrupted=True) if drill is not None and not drill.done.called else defer.succeed(None)
        d.addBoth(lambda _: gw.stopService())
        return d
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


def _stop(reactor) -> None:
    from twisted.internet.error import ReactorNotRunning
    try:
        reactor.stop()
    except ReactorNotRunning:       # already stopping (Ctrl-C): the shutdown trigger finishes the job
        pass
