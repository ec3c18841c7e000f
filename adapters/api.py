"""The REST/JSON API that dispatch software calls, under /api/v1.

Small on purpose: a route table of (method, pattern) -> handler; handlers return a Deferred of
(status, body).  Every error is JSON with a message that names what was wrong; a request body is
limited in size and must be a JSON object.  A POST that creates something answers only after
the database committed it (durable before acknowledged), and honours Idempotency-Key so that a
dispatch client that retries after a timeout does not create a second order.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

log = Logger()

MAX_BODY = 64 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str, **detail: Any):
        self.status, self.message, self.detail = status, message, detail
        super().__init__(message)


@dataclass
class ApiRequest:
    method: str
    path: str
    params: dict[str, str]           # from the path pattern
    query: dict[str, str]
    body: Any                        # a JSON object, or bytes for a raw-body route
    headers: dict[str, str]
    truncated: bool = False          # raw-body route: the body was longer than its limit


Handler = Callable[[ApiRequest], Any]


class Router:
    def __init__(self):
        self.routes: list[tuple[str, re.Pattern, Handler]] = []
        self.raw_limits: dict[Handler, int] = {}

    def add(self, method: str, pattern: str, handler: Handler, raw_body: int | None = None) -> None:
        """raw_body=N: the handler gets the body as bytes (at most N; `truncated` says if longer),
        for documents that are not JSON (CAP XML)."""
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        if raw_body is not None:
            self.raw_limits[handler] = raw_body
        self.routes.append((method, re.compile(regex), handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = []
        for m, regex, handler in self.routes:
            found = regex.match(path)
            if found:
                if m == method:
                    return handler, found.groupdict()
                allowed.append(m)
        if allowed:
            raise ApiError(405, f"{method} not allowed on {path}", allowed=sorted(set(allowed)))
        raise ApiError(404, f"no such resource: {path}")


class ApiResource(Resource):
    isLeaf = True

    def __init__(self, router: Router, prefix: str = "/api/v1"):
        super().__init__()
        self.router, self.prefix = router, prefix

    def render(self, request):
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        if path.startswith(self.prefix):
            path = path[len(self.prefix):] or "/"
        d = maybeDeferred(self._handle, request, method, path)

        def ok(result):
            status, body = result
            self._reply(request, status, body)

        def failed(f):
            if f.check(ApiError):
                e = f.value
                self._reply(request, e.status, {"error": e.message, **e.detail})
            else:
                log.failure("API {method} {path} failed", f, method=method, path=path)
                self._reply(request, 500, {"error": "internal error; the gateway log names it"})
        d.addCallbacks(ok, failed)
        d.addErrback(lambda f: log.failure("API reply failed", f))
        return NOT_DONE_YET

    def _handle(self, request, method, path):
        handler, params = self.router.match(method, path)
        body = None
        truncated = False
        raw_limit = self.router.raw_limits.get(handler)
        if raw_limit is not None:
            body = request.content.read(raw_limit + 1) if request.content else b""
            truncated = len(body) > raw_limit
            body = body[:raw_limit]
        elif method in ("POST", "PUT", "PATCH"):
            raw = request.content.read(MAX_BODY + 1) if request.content else b""
            if len(raw) > MAX_BODY:
                raise ApiError(413, f"request body over {MAX_BODY} bytes")
            try:
                body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
            except (UnicodeDecodeError, ValueError) as e:
                raise ApiError(400, f"request body is not JSON: {e}") from None
            if not isinstance(body, dict):
                raise ApiError(400, "request body must be a JSON object")
        query = {k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace") for k, v in request.args.items()}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in request.requestHeaders.getAllRawHeaders() for v in v}
        return handler(ApiRequest(method, path, params, query, body, headers, truncated))

    @staticmethod
    def _reply(request, status: int, body: Any) -> None:
        if request.finished or request._disconnected:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.write(json.dumps(body, ensure_ascii=False, default=_json_default).encode())
        request.finish()


def _json_default(value):
    """Datetimes as ISO 8601 (with their UTC offset); anything else as text."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def require(body: dict, key: str, kind: type | tuple, what: str | None = None):
    """A required field of the right JSON type, or a 400 naming it."""
    if key not in body:
        raise ApiError(400, f"missing field: {key}")
    value = body[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(400, f"field {key} must be {what or getattr(kind, '__name__', kind)}")
    return value
