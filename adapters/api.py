"""The REST/JSON API that dispatch software calls, under /api/v1.

A route table of declared operations (adapters/contract.py): each names the scope it needs and
the fields it accepts; the same declarations validate every request and write /openapi.json.
Handlers return a Deferred of (status, body).  Every error is JSON naming what was wrong and
which field.  A POST must be `application/json` (so a web page cannot send one cross-origin
without a preflight, which is never granted), its body a JSON object within the route's size.
A POST that creates something answers only after the database committed it (durable before
acknowledged).  A `read` key sees phone numbers masked to their last four digits.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from adapters.apikeys import Principal
from adapters.contract import Invalid, Route, check_object
from adapters.masking import mask_phones

log = Logger()

MAX_BODY = 64 * 1024
PREFIX = "/api/v1"


class ApiError(Exception):
    def __init__(self, status: int, message: str, **detail: Any):
        self.status, self.message, self.detail = status, message, detail
        super().__init__(message)


@dataclass
class ApiRequest:
    method: str
    path: str
    params: dict[str, str]           # from the path pattern
    query: dict[str, Any]
    body: Any
    headers: dict[str, str]
    principal: Principal

    @property
    def actor(self) -> str:
        """The author of whatever this request changes: the API key's name, never the body's word."""
        return self.principal.actor


Handler = Callable[[ApiRequest], Any]


class Router:
    def __init__(self):
        self.routes: list[tuple[re.Pattern, Route]] = []

    def add(self, method: str, pattern: str, handler: Handler, *, scope: str = "read", summary: str = "",
            **declared) -> Route:
        route = Route(method, PREFIX + pattern, scope, summary or handler.__doc__ or "", handler, **declared)
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        self.routes.append((re.compile(regex), route))
        return route

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = []
        for regex, route in self.routes:
            found = regex.match(path)
            if found:
                if route.method == method or (method == "HEAD" and route.method == "GET"):
                    return route, {k: unquote(v) for k, v in found.groupdict().items()}
                allowed.append(route.method)
        if allowed:
            raise ApiError(405, f"{method} not allowed on {PREFIX}{path}", field="method",
                           allowed=sorted(set(allowed)))
        raise ApiError(404, f"no such resource: {PREFIX}{path}", field="path")

    def declared(self) -> list[Route]:
        return [route for _, route in self.routes]


def is_database_outage(failure) -> bool:
    """The database is unreachable or too slow: 503, the client may retry."""
    from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError as PoolTimeout
    from twisted.internet.defer import TimeoutError as DeferredTimeout
    if failure.check(OperationalError, PoolTimeout, DeferredTimeout):
        return True
    return bool(failure.check(DBAPIError)) and bool(getattr(failure.value, "connection_invalidated", False))


@dataclass(frozen=True)
class RawBody:
    """A route's answer that is not JSON (a printable page)."""
    media_type: str
    data: bytes


def write_json(request, status: int, body: Any, headers: dict[bytes, bytes] | None = None) -> None:
    if request.finished or request._disconnected:
        return
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    for k, v in (headers or {}).items():
        request.setHeader(k, v)
    request.write(json.dumps(body, ensure_ascii=False, default=_json_default).encode())
    request.finish()


def reply_failure(request, f, what: str) -> None:
    """An ApiError as its JSON; a database outage as 503; anything else as a logged 500."""
    if f.check(ApiError):
        e = f.value
        headers = {b"retry-after": str(e.detail["retry_after"]).encode()} if "retry_after" in e.detail else None
        write_json(request, e.status, {"error": e.message, **e.detail}, headers)
    elif is_database_outage(f):
        log.error("{what}: database unavailable: {err}", what=what, err=f.getErrorMessage())
        write_json(request, 503, {"error": "the database is unavailable; retry shortly", "field": "database"},
                   {b"retry-after": b"5"})
    else:
        log.failure("{what} failed", f, what=what)
        write_json(request, 500, {"error": "internal error; the gateway log names it", "field": "server"})


class ApiResource(Resource):
    isLeaf = True

    def __init__(self, router: Router, auth, prefix: str = PREFIX):
        super().__init__()
        self.router, self.auth, self.prefix = router, auth, prefix

    def render(self, request):
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        if path.startswith(self.prefix):
            path = path[len(self.prefix):] or "/"
        d = defer.maybeDeferred(self._handle, request, method, path)

        def ok(result):
            route_status, body = result
            if isinstance(body, RawBody):
                if not (request.finished or request._disconnected):
                    request.setResponseCode(route_status)
                    request.setHeader(b"content-type", body.media_type.encode())
                    request.setHeader(b"cache-control", b"no-store")
                    request.write(body.data)
                    request.finish()
                return
            write_json(request, route_status, body)
        d.addCallbacks(ok, lambda f: reply_failure(request, f, f"API {method} {path}"))
        d.addErrback(lambda f: log.failure("API reply failed", f))
        return NOT_DONE_YET

    @defer.inlineCallbacks
    def _handle(self, request, method, path):
        route, params = self.router.match(method, path)
        principal = yield self.auth.check(request, route.scope)
        try:
            params = check_object(route.params, params)
            query = check_object(route.query, {k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace")
                                               for k, v in request.args.items()})
            body = read_body(request, route) if route.body is not None else None
        except Invalid as e:
            raise ApiError(422, f"{e.field}: {e.message}", field=e.field) from None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, vs in request.requestHeaders.getAllRawHeaders() for v in vs}
        status, answer = yield route.handler(ApiRequest(method, path, params, query, body, headers, principal))
        return status, (answer if principal.sees_full_numbers or isinstance(answer, RawBody) else mask_phones(answer))


def read_body(request, route: Route) -> dict:
    """The request's JSON object, checked against the route's declared fields."""
    ctype = (request.getHeader(b"content-type") or b"").decode("latin-1").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, f"a POST body must be application/json, got {ctype or 'no Content-Type'}",
                       field="Content-Type")
    raw = request.content.read(route.max_body + 1) if request.content else b""
    if len(raw) > route.max_body:
        raise ApiError(413, f"request body over {route.max_body} bytes", field="body")
    try:
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constant) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, f"request body is not JSON: {e}", field="body") from None
    except Invalid as e:
        raise ApiError(422, f"{e.field}: {e.message}", field=e.field) from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", field="body")
    return check_object(route.body, body)


def _no_duplicates(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise Invalid(k, "given twice")
        seen[k] = v
    return seen


def _no_constant(name):
    raise Invalid("body", f"{name} is not a JSON number")


def _json_default(value):
    """Datetimes as ISO 8601 (with their UTC offset); anything else as text."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def refuse(status: int, field_name: str, message: str, **detail) -> ApiError:
    return ApiError(status, f"{field_name}: {message}" if status == 422 else message, field=field_name, **detail)
