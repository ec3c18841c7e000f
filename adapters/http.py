"""The gateway's HTTP port: /health for load balancers and engineers, /metrics for Prometheus,
/openapi.json, and the root that answers unknown paths and wrong methods in JSON like the API.
HTTPS when http.tls_cert and http.tls_key are set (Twisted's TLS endpoint)."""
from __future__ import annotations

import json
import re

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.http import combinedLogFormatter
from twisted.web.server import NOT_DONE_YET, Request, Site, UnsupportedMethod

from adapters.api import reply_failure, write_json
from gateway import __version__
from gateway.health import PartHealth, collect, overall

log = Logger()


def _ping(conn):
    return conn.execute(text("SELECT 1")).scalar_one()


class JsonResource(Resource):
    """A resource whose wrong methods and unknown children answer in JSON, like the API."""

    def render(self, request):
        if self.isLeaf and [p for p in request.postpath if p]:      # /health/x is not /health
            return NotFound().render(request)
        try:
            return super().render(request)
        except UnsupportedMethod as e:
            write_json(request, 405, {"error": f"{request.method.decode('ascii', 'replace')} not allowed on "
                                               f"{request.path.decode('utf-8', 'replace')}", "field": "method",
                                      "allowed": sorted(m.decode() for m in e.allowedMethods)},
                       {b"allow": b", ".join(e.allowedMethods)})
            return NOT_DONE_YET

    def getChild(self, path, request):
        return NotFound()


class NotFound(JsonResource):
    isLeaf = True

    def render(self, request):
        write_json(request, 404, {"error": f"no such resource: {request.path.decode('utf-8', 'replace')}",
                                  "field": "path"})
        return NOT_DONE_YET


class Guarded(JsonResource):
    """A site resource behind a key of `scope`: the board, the event stream, the OpenAPI document.

    `cookie`: the board's and the stream's cookie is accepted; `query_key`: `?key=` is accepted
    once, set as an HttpOnly, SameSite=Strict cookie, and the browser sent back here without it,
    so the key stays out of the wall screen's address bar and history."""
    isLeaf = True
    allowedMethods = (b"GET", b"HEAD")

    def __init__(self, inner: Resource, auth, scope: str = "read", *, cookie: bool = False,
                 query_key: bool = False, secure: bool = False):
        super().__init__()
        self.inner, self.auth, self.scope = inner, auth, scope
        self.cookie, self.query_key, self.secure = cookie, query_key, secure

    def render(self, request):
        if request.method not in (b"GET", b"HEAD") or [p for p in request.postpath if p]:
            return super().render(request)     # 405 or 404, in JSON
        key = None
        if self.query_key and b"key" in request.args:
            key = request.args[b"key"][-1].decode("ascii", "replace")
        d = self.auth.check(request, self.scope, cookie=self.cookie, key=key)

        def allowed(principal):
            request.principal = principal
            if key is not None:
                from adapters.auth import COOKIE
                # Kept 180 days, so the wall screen survives a reboot; revoking the key ends it.
                request.addCookie(COOKIE, key.encode(), path=b"/", httpOnly=True, secure=self.secure,
                                  sameSite="strict", max_age=str(180 * 86400))
                request.setResponseCode(303)
                request.setHeader(b"location", request.path)
                request.finish()
                return
            body = self.inner.render(request)
            if body is not NOT_DONE_YET:
                request.write(body)
                request.finish()
        d.addCallback(allowed)
        d.addErrback(lambda f: reply_failure(request, f, f"GET {request.path.decode('utf-8', 'replace')}"))
        return NOT_DONE_YET


class OpenApiResource(JsonResource):
    isLeaf = True

    def __init__(self, router):
        super().__init__()
        self.router = router

    def render_GET(self, request):
        from adapters.openapi import document
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return json.dumps(document(self.router.declared()), ensure_ascii=False, indent=2).encode()


class HealthResource(JsonResource):
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


class MetricsResource(JsonResource):
    isLeaf = True

    def __init__(self, registry=REGISTRY):
        super().__init__()
        self.registry = registry

    def render_GET(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self.registry)


class BoundedRequest(Request):
    """A request whose body may not exceed MAX_CONTENT: past it the connection is dropped before
    more is spooled to disk.  The routes' own limits (64 KiB, 2 MiB) answer 413 well before."""
    MAX_CONTENT = 4 * 1024 * 1024
    _received = 0

    def gotLength(self, length):
        super().gotLength(length)
        if length is not None and length > self.MAX_CONTENT:
            self._drop()

    def handleContentChunk(self, data):
        self._received += len(data)
        if self._received > self.MAX_CONTENT:
            self._drop()
            return
        super().handleContentChunk(data)

    def _drop(self):
        if self.channel is not None and self.channel.transport is not None:
            log.warn("HTTP request body from {peer} over {n} bytes: connection dropped",
                     peer=getattr(self.getClientAddress(), "host", "?"), n=self.MAX_CONTENT)
            self.channel.transport.abortConnection()


def access_line(timestamp, request) -> str:
    """The access log's line, with the board's `?key=` hidden: a key never reaches a log."""
    return re.sub(r"([?&]key=)[^&\s\"]*", r"\1(hidden)", combinedLogFormatter(timestamp, request))


def build_site(reactor, database, node_name: str, started_at: float, checks=(),
               mode: str = "live") -> tuple[Site, Resource]:
    root = JsonResource()
    root.putChild(b"health", HealthResource(reactor, database, node_name, started_at, checks, mode))
    root.putChild(b"metrics", MetricsResource())
    site = Site(root, logFormatter=access_line, requestFactory=BoundedRequest)
    site.displayTracebacks = False
    return site, root


def http_endpoint_description(interface: str, port: int, tls_cert: str = "", tls_key: str = "") -> str:
    """A Twisted endpoint string: plain TCP, or TLS with the given PEM certificate (chain) and key."""
    def quoted(v):
        return str(v).replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")
    if tls_cert:
        return (f"ssl:{port}:interface={quoted(interface)}:certKey={quoted(tls_cert)}"
                f":privateKey={quoted(tls_key or tls_cert)}")
    return f"tcp:{port}:interface={quoted(interface)}"
