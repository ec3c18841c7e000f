"""The OpenAPI 3.1 document, written from the routes' own declarations (adapters/contract.py).

`python -m adapters.openapi` prints it; docs/openapi.json is that output, and a test checks the
two are equal, so the committed contract is always the one the gateway enforces.
"""
from __future__ import annotations

import json
import re

from adapters.contract import Field, Response, Route, object_schema

ERROR = {"type": "object", "required": ["error", "field"],
         "properties": {"error": {"type": "string", "description": "what was wrong"},
                        "field": {"type": "string", "description": "the field, header or part it was about"},
                        "required_scope": {"type": "string"}, "allowed": {"type": "array"},
                        "problems": {"type": "array"}, "sms_parts": {"type": "integer"},
                        "modem": {"type": "string"}, "state": {"type": "string"}, "detail": {"type": "string"}}}
ERROR_WORDS = {400: "the body is not a JSON object", 401: "no API key, or an unknown, revoked or malformed one",
               403: "the key's scope is too low", 404: "no such resource", 405: "method not allowed",
               409: "the resource or part is not in a state that allows this (the message says why)",
               413: "body too large", 415: "the body is not application/json",
               422: "a field is missing, unknown, of the wrong type, too long, or refused",
               429: "too many refused requests from this address",
               501: "not available on this installation (the message says what is missing)",
               503: "the database is unavailable"}

SITE_ROUTES = (
    Route("GET", "/health", None, "200 when the database and every part are up, 503 otherwise",
          ok={200: Response("healthy", {"type": "object", "required": ["status", "checks"]}),
              503: Response("degraded", {"type": "object", "required": ["status", "checks"]})}),
    Route("GET", "/metrics", None, "Prometheus metrics", ok={200: Response("text exposition", None, "text/plain")}),
    Route("GET", "/openapi.json", "read", "this document", ok={200: Response("OpenAPI 3.1", {"type": "object"})}),
    Route("GET", "/board", "read", "the status board for the command hall's wall screen; `?key=` once sets "
          "an HttpOnly, SameSite=Strict cookie and redirects here",
          query=(Field("key", "string", "a read key, once; kept in a cookie", max_length=200),),
          ok={200: Response("the board", None, "text/html"), 303: Response("key accepted; cookie set", None, "")}),
    Route("GET", "/events", "read", "the event stream (Server-Sent Events); Last-Event-ID or since= resumes",
          query=(Field("since", "string", "resume after this event number", pattern=r"^\d{1,18}$"),
                 Field("kind", "string", "only these kinds (or their family, e.g. order)", max_length=64)),
          ok={200: Response("the stream", None, "text/event-stream")}),
)


def _operation(route: Route) -> dict:
    op: dict = {"summary": route.summary, "operationId": _operation_id(route)}
    if route.scope:
        op["security"] = [{"apiKey": []}]
        op["x-required-scope"] = route.scope
        op["description"] = f"Needs an API key of scope `{route.scope}` or higher."
    else:
        op["security"] = []
    parameters = [_param(f, "path") for f in route.params] + [_param(f, "query") for f in route.query] + \
                 [_param(f, "header") for f in route.headers]
    if parameters:
        op["parameters"] = parameters
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": object_schema(route.body)}}}
    responses = {}
    for status, r in sorted(route.ok.items()):
        responses[str(status)] = {"description": r.description}
        if r.media_type:
            responses[str(status)]["content"] = {r.media_type: {"schema": r.schema or {"type": "string"}}}
    for status in route.error_codes():
        responses.setdefault(str(status), {"description": ERROR_WORDS[status],
                                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    op["responses"] = responses
    return op


def _param(f: Field, where: str) -> dict:
    return {"name": f.name, "in": where, "required": f.required or where == "path", "schema": f.schema(),
            **({"description": f.description} if f.description else {})}


def _operation_id(route: Route) -> str:
    words = re.sub(r"[{}]", "", route.path.removeprefix("/api/v1")).strip("/").replace("/", "_").replace(".", "_")
    return f"{route.method.lower()}_{words or 'root'}"


def document(routes) -> dict:
    paths: dict = {}
    for route in list(SITE_ROUTES) + list(routes):
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    from gateway import __version__
    return {
        "openapi": "3.1.0",
        "info": {"title": "Yihu gateway API", "version": __version__,
                 "description": "The adapter API of the Yihu emergency telephony, SMS and IVR gateway. Keys: "
                                "`yihu apikey create --name NAME --scope read|dispatch|admin`; send "
                                "`Authorization: Bearer KEY`. Scopes: read (every GET), dispatch (also orders, "
                                "hotline marks and call-backs), admin (also the directory import). A read key "
                                "sees phone numbers masked to their last four digits. Every 4xx names a `field`."},
        "paths": paths,
        "components": {"securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                                      "description": "an API key made by `yihu apikey create`"}},
                       "schemas": {"Error": ERROR}},
    }


def full_routes():
    """Every API route, declared the way the gateway declares them (no database needed)."""
    from adapters.api import Router
    from adapters.directory_api import add_directory_routes
    from adapters.hotline_api import add_hotline_routes
    from adapters.modems_api import add_modem_routes
    from adapters.orders_api import add_order_routes
    router = Router()
    add_directory_routes(router, None)
    add_order_routes(router, None, None, None)
    add_hotline_routes(router, None, "Asia/Shanghai")
    from adapters.forms_api import add_form_routes
    add_form_routes(router, None, None, None, "Asia/Shanghai")
    add_modem_routes(router, None, None, None, None)
    return router.declared()


def render(routes=None) -> str:
    return json.dumps(document(full_routes() if routes is None else routes), ensure_ascii=False, indent=2) + "\n"


if __name__ == "__main__":
    print(render(), end="")
