"""`yihu modem pin PORT`: send the SIM PIN again on purpose (see sms/pin.py for the design).

With the gateway running the request needs an admin API key (the retry spends one of the SIM's
PIN tries): `--key-file FILE` or $YIHU_API_KEY.

Exit status: 0 the SIM is unlocked (or was already); 1 the SIM refused, or the gateway answers
but not in time; 2 no `sms.sim_pin` in the configuration, no such modem, or no/insufficient API key."""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import quote

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def add_modem_commands(subparsers, common=None) -> None:
    parents = [common] if common is not None else []
    p = subparsers.add_parser("modem", help="the modem bank: operator actions")
    sub = p.add_subparsers(dest="modem_command", required=True, metavar="ACTION")
    pin = sub.add_parser("pin", parents=parents,
                         help="send sms.sim_pin (correct it in the configuration first) once more on one modem")
    pin.add_argument("port", help="the modem's serial port, as in sms.ports (or its last path component)")
    pin.add_argument("--timeout", type=float, default=40.0, help="seconds to wait for the modem's answer")
    pin.add_argument("--key-file", metavar="FILE",
                     help="an admin API key for the running gateway ('-': standard input; default: $YIHU_API_KEY)")
    pin.set_defaults(func=cmd_pin)


def _gateway_url(cfg) -> str:
    host = cfg.http.interface
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{cfg.http.port}" if ":" in host else f"http://{host}:{cfg.http.port}"


def _api_key(args) -> str | None:
    """An admin key from a file or the environment, never from the command line (ps shows it)."""
    path = getattr(args, "key_file", None)
    if path == "-":
        return sys.stdin.readline().strip() or None
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    return os.environ.get("YIHU_API_KEY") or None


def cmd_pin(args) -> int:
    cfg = args.config
    if not cfg.sms.sim_pin:
        print(f"yihu: sms.sim_pin is not set in {args.config_path or 'the configuration'}: set the SIM's PIN "
              "there first", file=sys.stderr)
        return EXIT_USAGE
    name = args.port.rsplit("/", 1)[-1]
    url = f"{_gateway_url(cfg)}/api/v1/modems/{quote(name, safe='')}/pin"
    headers = {"Content-Type": "application/json"}
    try:
        key = _api_key(args)
    except OSError as e:
        print(f"yihu: cannot read the API key file {args.key_file}: {e.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST", headers=headers),
                                    timeout=args.timeout) as r:
            body = json.loads(r.read() or b"{}")
            print(f"{body.get('modem', args.port)}: {body.get('detail', body.get('state'))} (through the running gateway)")
            return EXIT_OK
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read() or b"{}")
        except ValueError:
            body = {}
        print(f"yihu: {args.port}: {body.get('detail') or body.get('error') or e.reason}", file=sys.stderr)
        if e.code in (401, 403):
            print("yihu: the running gateway wants an admin API key (--key-file FILE or $YIHU_API_KEY)",
                  file=sys.stderr)
            return EXIT_USAGE
        return EXIT_USAGE if e.code in (400, 404) or "not set" in str(body.get("error", "")) else EXIT_REFUSED
    except (urllib.error.URLError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        if not isinstance(reason, ConnectionRefusedError):
            print(f"yihu: the gateway at {_gateway_url(cfg)} does not answer ({reason}); not touching the port "
                  "it may hold", file=sys.stderr)
            return EXIT_REFUSED
    return _direct(args.port, cfg)


def _direct(port: str, cfg) -> int:
    """The gateway is stopped: the port is ours."""
    from twisted.internet import defer, reactor

    from sms.at import ATSession
    from sms.bank import serial_opener
    from sms.pin import PinRefused, enter_pin_once
    outcome = {}

    def run(reactor):
        session = ATSession(reactor, port)
        try:
            transport = serial_opener(reactor, port, cfg.sms.baudrate)(session)
        except Exception as e:  # noqa: BLE001 - absent device, permissions
            outcome["error"] = f"cannot open {port}: {e.__class__.__name__}: {e}"
            return defer.succeed(None)
        d = enter_pin_once(session, cfg.sms.sim_pin, timeout=cfg.sms.command_timeout)
        d.addCallbacks(lambda r: outcome.update(ok=r), lambda f: outcome.update(
            refused=str(f.value)) if f.check(PinRefused) else outcome.update(error=f.getErrorMessage()))
        d.addBoth(lambda _: transport.loseConnection())
        return d
    reactor.callWhenRunning(lambda: run(reactor).addBoth(lambda _: reactor.stop()))
    reactor.run(installSignalHandlers=True)
    if "ok" in outcome:
        print(f"{port}: SIM PIN {outcome['ok']} (gateway not running; port opened directly)")
        return EXIT_OK
    print(f"yihu: {port}: {outcome.get('refused') or outcome.get('error')}", file=sys.stderr)
    return EXIT_REFUSED
