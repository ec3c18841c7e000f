"""Standalone modem bank: `python -m sms.emulator --modems 4` prints the pty paths and runs.

Type `sms <modem> <sender> <text>` on stdin to script an inbound SMS (a commander's reply).
The console stops the bank when stdin closes; as a service (deploy/systemd/yihu-emulated-modems.service,
stdin /dev/null) `--no-console` runs it until SIGTERM instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile


from sms.emulator.modem import HEADER_STYLES


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m sms.emulator")
    ap.add_argument("--modems", type=int, default=4)
    ap.add_argument("--dir", default=None, help="where the port links go (default: a temp dir)")
    ap.add_argument("--segment-time", type=float, default=3.0, help="seconds per submitted segment")
    ap.add_argument("--report-delay", type=float, default=0.5, help="seconds before a status report")
    ap.add_argument("--boot-time", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=None, help="for every random draw below (modem i: seed + i)")
    ap.add_argument("--noise-rate", type=float, default=0.0,
                    help="chance of an unsolicited line (+CTZV, ^NWTIME, ...) at each point of an answer")
    ap.add_argument("--noise-interval", type=float, default=0.0,
                    help="mean seconds between unsolicited lines sent on their own (0: none)")
    ap.add_argument("--header-style", default="standard", choices=HEADER_STYLES,
                    help="+CMGR/+CMGL header form (random: one per read)")
    ap.add_argument("--submit-error-rate", type=float, default=0.0,
                    help="chance a submission is refused (+CMS ERROR 500, 330, 512-515)")
    ap.add_argument("--report-trouble-rate", type=float, default=0.0,
                    help="chance a segment's status reports say still trying / failed")
    ap.add_argument("--no-console", action="store_true",
                    help="no stdin console: run until SIGTERM (a service, whose stdin is /dev/null)")
    args = ap.parse_args(argv)

    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    from sms.emulator import EmulatorBank

    directory = args.dir or tempfile.mkdtemp(prefix="yihu-modems-")
    bank = EmulatorBank(reactor, args.modems, directory, segment_time=args.segment_time,
                        report_delay=args.report_delay, boot_time=args.boot_time, seed=args.seed,
                        noise_rate=args.noise_rate, noise_interval=args.noise_interval,
                        header_style=args.header_style, submit_error_rate=args.submit_error_rate,
                        report_trouble_rate=args.report_trouble_rate)
    bank.start()
    for m, p in zip(bank.modems, bank.paths):
        print(f"{m.name} {p} {m.sim_number}", flush=True)
    print("READY", flush=True)

    class Console(LineReceiver):
        delimiter = os.linesep.encode()

        def lineReceived(self, line):
            parts = line.decode("utf-8", "replace").split(" ", 3)
            if len(parts) == 4 and parts[0] == "sms":
                bank.modems[int(parts[1])].receive_sms(parts[2], parts[3])
            elif parts and parts[0] == "stats":
                print(f"submitted {bank.network.submitted}", flush=True)
            elif parts and parts[0] == "quit":
                reactor.stop()

        def connectionLost(self, reason):
            if reactor.running:
                reactor.stop()

    if not args.no_console:
        stdio.StandardIO(Console())
    reactor.addSystemEventTrigger("before", "shutdown", bank.stop)
    reactor.run()


if __name__ == "__main__":
    main()
