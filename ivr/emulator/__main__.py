"""Drill: place one emulated call into a running gateway's FastAGI server and print what happened.

    .venv/bin/python -m ivr.emulator order?order=0427 --var ORDER_CODE=0427 --moves 0,2
    .venv/bin/python -m ivr.emulator feedback --callerid 13805761234 --moves 0427#,1
    .venv/bin/python -m ivr.emulator hotline?line=110 --var HOTLINE=110 --moves hangup
    .venv/bin/python -m ivr.emulator --replay path/to/order-call-press1.agi.jsonl

Moves: digits (answer the next menu), `!digits` (interrupt the next prompt), `silence`, `hangup`.
"""
from __future__ import annotations

import argparse
import sys

from ivr.emulator.caller import HangUp, Press, ScriptedCaller, Silence


def parse_moves(text: str):
    moves = []
    for m in filter(None, (t.strip() for t in text.split(","))):
        if m == "silence":
            moves.append(Silence())
        elif m == "hangup":
            moves.append(HangUp())
        elif m.startswith("!"):
            moves.append(Press(m[1:], barge_in=True))
        else:
            moves.append(Press(m))
    return moves


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Place an emulated Asterisk call into the FastAGI server")
    ap.add_argument("script", nargs="?", default="order?order=0427")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4573)
    ap.add_argument("--callerid", default="unknown")
    ap.add_argument("--var", action="append", default=[], help="channel variable NAME=VALUE")
    ap.add_argument("--moves", default="", help="comma-separated caller moves")
    ap.add_argument("--replay", help="replay a recorded .agi.jsonl session instead")
    ap.add_argument("--pace", type=float, default=0.0, help="replay at this fraction of the recorded delays")
    args = ap.parse_args(argv)

    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from ivr.emulator.client import place_call
    from ivr.emulator.transcript import replay_transcript
    result = {}

    async def go():
        if args.replay:
            r = await replay_transcript(reactor, args.host, args.port, args.replay, pace=args.pace)
            for sent, expected in zip(r.sent, r.expected):
                print(("  " if sent == expected else "≠ ") + sent + ("" if sent == expected else f"   (recorded: {expected})"))
            print(f"matches the recording: {r.matches}; closed by {r.closed_by}")
            return 0 if r.matches else 1
        variables = dict(v.split("=", 1) for v in args.var)
        rec = await place_call(reactor, args.host, args.port, args.script, callerid=args.callerid,
                               caller=ScriptedCaller(parse_moves(args.moves)), variables=variables)
        for cmd in rec.commands:
            print("G:", cmd)
        print("heard:", ", ".join(rec.played))
        print("variables:", rec.variables, "| closed by", rec.closed_by,
              "| hung up by", rec.channel.hung_up_by)
        return 0

    def done(r):
        result["rc"] = r if isinstance(r, int) else 1
        if not isinstance(r, int):
            print(f"drill failed: {r.getErrorMessage()}", file=sys.stderr)
        reactor.stop()
    Deferred.fromCoroutine(go()).addTimeout(120, reactor).addBoth(done)
    reactor.run()
    return result.get("rc", 1)


if __name__ == "__main__":
    sys.exit(main())
