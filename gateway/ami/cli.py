"""``yihu ami check`` (a second-opinion AMI check with asterisk-ami) and ``yihu ami emulator``.

The lead's CLI may call ``add_ami_commands(subparsers, common)``; each leaf sets ``args.func``.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict


def add_ami_commands(subparsers, common=None):
    parents = [common] if common is not None and hasattr(common, "parse_args") else []
    top = subparsers.add_parser("ami", help="Asterisk AMI: check, emulator")
    sub = top.add_subparsers(dest="ami_command", metavar="{check,emulator}")
    sub.required = True
    p = sub.add_parser("check", parents=parents, help="log in with asterisk-ami and report")
    p.add_argument("--host", default=os.environ.get("YIHU_AMI_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("YIHU_AMI_PORT", "5038")))
    p.add_argument("--user", default=os.environ.get("YIHU_AMI_USER", "yihu"))
    p.add_argument("--secret", default=os.environ.get("YIHU_AMI_SECRET"),
                   help="default: $YIHU_AMI_SECRET")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("emulator", help="run the AMI emulator (drills)")
    p.add_argument("emulator_args", nargs="*", help="arguments of python -m gateway.ami.emulator")
    p.set_defaults(func=lambda args: __import__("gateway.ami.emulator.__main__",
                                                fromlist=["main"]).main(args.emulator_args))
    return top


def cmd_check(args) -> int:
    from gateway.ami.diagnose import check_ami
    if not args.secret:
        print("error: no secret (--secret or $YIHU_AMI_SECRET)", file=sys.stderr)
        return 2
    res = check_ami(args.host, args.port, args.user, args.secret, timeout=args.timeout)
    if args.json:
        print(json.dumps({**asdict(res), "ok": res.ok}, ensure_ascii=False, indent=1))
    else:
        print("\n".join(res.lines()))
    return 0 if res.ok else 1


def main(argv=None) -> int:
    """``python -m gateway.ami.cli check ...`` without the yihu entry point."""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m gateway.ami.cli")
    sub = ap.add_subparsers(dest="command")
    top = add_ami_commands(sub)
    args = top.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
