"""The gateway's HTTP port: /health for load balancers and engineers, /metrics for Prometheus."""
from __future__ import annotations

import json

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from gateway import __version__
from gateway.health import PartHealth, collect, overall

log = Logger()


def _ping(conn):
    return conn.execute(text("SELECT 1")).scalar_one()


class HealthResource(Resource):
    """Every part with its state (gateway/health.py); 503 when an enabled part is down (the
    database included), 200 otherwise; JSON either way, with the mode (live / drill)."""
    isLeaf = True

    def __init__(self, reactor, database, node_name: str, started_at: float, checks=(), mode: str = "live"):
        super().__init__()
        self.reactor, self.database, self.node_name, self.started_at = reactor, database, node_name, started_at
        self.checks = checks    # a list the parts append to: callables returning PartHealth(s)
        self.mode = mode

    def render_GET(self, request):
        d: Deferred = self.database.run(_ping)
        d.addTimeout(5, self.reactor)

        def reply(db_ok, detail):
            parts = [PartHealth("database", db_ok, detail)] + collect(self.checks)
            status, code = overall(parts)
            body = {"status": status, "mode": self.mode, "version": __version__, "node": self.node_name,
                    "uptime_s": round(self.reactor.seconds() - self.started_at, 1),
                    "checks": {p.name: p.as_dict() for p in parts}}
            request.setResponseCode(code)
            request.setHeader(b"content-type", b"application/json; charset=utf-8")
            request.write(json.dumps(body, ensure_ascii=False).encode())
            request.finish()

        def failed(f):
            log.warn("health check: database unreachable: {err}", err=f.getErrorMessage())
            reply(False, f"unreachable ({f.type.__name__})")

        d.addCallbacks(lambda _: reply(True, "reachable"), failed)
        d.addErrback(lambda f: log.failure("health reply failed", f))
        return NOT_DONE_YET


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, registry=REGISTRY):
        super().__init__()
        self.registry = registry

    def render_GET(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self.registry)


def build_site(reactor, database, node_name: str, started_at: float, checks=(),
               mode: str = "live") -> tuple[Site, Resource]:
    root = Resource()
    root.putChild(b"health", HealthResource(reactor, database, node_name, started_at, checks, mode))
    root.putChild(b"metrics", MetricsResource())
    site = Site(root)
    site.displayTracebacks = False
    return site, root
