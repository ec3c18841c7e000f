"""Run the AMI emulator alone: ``python -m gateway.ami.emulator --port 5038``.

Drill mode: ``--calls 20 --rate 2`` plays random hotline calls (110/119/122, all outcomes);
``--replay PATH.ami.jsonl`` replays a recorded session's events.  Stop with Ctrl-C.
"""
from __future__ import annotations

import argparse
import random
import sys

from twisted.internet import reactor, task
from twisted.logger import globalLogBeginner, textFileLogObserver

from gateway.ami.emulator import AmiEmulator, HotlineCall, Transcript


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.ami.emulator",
                                 description="Asterisk AMI emulator (drills, tests)")
    ap.add_argument("--port", type=int, default=5038)
    ap.add_argument("--interface", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; never expose it)")
    ap.add_argument("--user", default="gateway")
    ap.add_argument("--secret", default="rig-secret")
    ap.add_argument("--calls", type=int, default=0, help="hotline calls to play (drill)")
    ap.add_argument("--rate", type=float, default=1.0, help="calls per second in a drill")
    ap.add_argument("--replay", help="a NAME.ami.jsonl transcript to replay once a client logs in")
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--seed", type=int)
    args = ap.parse_args(argv)

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    em = AmiEmulator(reactor, users={args.user: {"secret": args.secret, "read": "all",
                                                 "write": "all"}},
                     speed=args.speed, seed=args.seed)
    em.listen(args.port, args.interface)
    print(f"AMI emulator listening on {args.interface}:{em.port_number} "
          f"(user {args.user})", file=sys.stderr)
    rnd = random.Random(args.seed)

    def wait_for_client():
        if any(s.authenticated for s in em.sessions):
            start()
        else:
            reactor.callLater(0.2, wait_for_client)

    def start():
        if args.replay:
            em.play(Transcript.load(args.replay).unsolicited())
        for i in range(args.calls):
            call = HotlineCall(line=rnd.choice(["110", "119", "122"]),
                               caller=f"138{rnd.randrange(10**8):08d}",
                               outcome=rnd.choice(["answered", "answered", "answered",
                                                   "abandoned_ivr", "abandoned_queue"]),
                               ivr_seconds=rnd.uniform(0.5, 3), queue_seconds=rnd.uniform(0.5, 8),
                               talk_seconds=rnd.uniform(2, 20))
            task.deferLater(reactor, i / max(args.rate, 0.001), em.play, call)

    if args.calls or args.replay:
        wait_for_client()
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
