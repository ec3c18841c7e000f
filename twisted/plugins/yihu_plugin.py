"""`twist yihu --config FILE`: the gateway as a twist plugin (run from the repository root with
`python -m twisted yihu --config FILE`, or anywhere once this folder is on the plugin path)."""
from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    optParameters = [["config", "c", None, "TOML configuration file (default: the embedded default)"]]


@implementer(IServiceMaker, IPlugin)
class YihuServiceMaker:
    tapname = "yihu"
    description = "Yihu emergency telephony, SMS and IVR gateway"
    options = Options

    def makeService(self, options):
        from twisted.internet import reactor

        from gateway.cli import Fatal, _claim_node_name, _hold_sqlite, _load, _open_database, check_http_trust
        from gateway.wiring import build_service

        class Args:
            config = options["config"]
            database_url = None
            log_format = None
        try:
            cfg = _load(Args)
            _hold_sqlite(cfg)
            _open_database(cfg)
            _claim_node_name(cfg)
            check_http_trust(cfg)
        except Fatal as e:
            raise SystemExit("\n".join(f"yihu: {line}" for line in e.lines)) from None
        gateway = build_service(cfg, reactor)
        start = gateway.startService

        def start_or_fail():
            # Fail fast under twist too: a part that cannot start stops the process with status 2.
            import os
            import sys

            from gateway.service import stop_on_failure
            start()

            def report(line):
                print(f"yihu: cannot start: {line}", file=sys.stderr, flush=True)
                reactor.addSystemEventTrigger("after", "shutdown", os._exit, 2)
            stop_on_failure(gateway, reactor, report)
        gateway.startService = start_or_fail
        return gateway


yihu = YihuServiceMaker()
