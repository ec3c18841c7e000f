"""API routes for orders: what dispatch software sends and reads.

    POST /orders               create and send an order (Idempotency-Key honoured); 201 after COMMIT
    GET  /orders[?all=1]       open orders (or the latest 50) with per-state team counts
    GET  /orders/{code}        the order summary: per team state, who answered, time taken, steps
    POST /orders/{code}/close  close an order: its escalation stops

The author of an order or a close is the API key's name; the body has no say in it.
"""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone

from sqlalchemy.exc import IntegrityError

from adapters.api import ApiError, Router, refuse
from adapters.contract import Field, Response, text
from adapters.idempotency import IdempotencyConflict, idempotent_create_tx, request_hash
from gateway.escalation.deadlines import RULES, response_minutes
from gateway.orders.messages import order_sms
from gateway.orders.order import KINDS, ONSCENE_COMMANDER, TARGET_HOWS, OrderRequest, Target
from gateway.orders.store import NoCommander, NoTeams
from gateway.orders.summary import load_summary_tx
from sms.encoding import split_text

TARGET = Field("target", "any_of", "the teams: \"all\", \"kind:professional\", \"township:白塔镇\", "
               "\"teams:PUB-01,PRO-04\", \"specialty:防汛\", or {\"how\": ..., \"values\": [...]}", required=True, choices=(
                   text("target", 2000, "all, kind:K, township:T, specialty:S or teams:CODE,CODE", not_blank=True),
                   Field("target", "object", properties=(
                       Field("how", "string", required=True, enum=TARGET_HOWS),
                       Field("values", "array", items=text("value", 100, not_blank=True), max_items=100),
                   ))))

ORDER_BODY = (
    text("incident_ref", 100, "the dispatch software's incident reference", required=True, not_blank=True,
         example="XJ-2026-1130-01"),
    Field("kind", "string", "decides who commands on scene", required=True, enum=KINDS),
    text("text", 1000, "the order, in the center's words (also limited by orders.max_sms_parts)",
         required=True, multiline=True, not_blank=True, example="白塔镇山体滑坡，请立即赶赴现场。"),
    TARGET,
    Field("rule", "string", "same_township: arrive in 20/30 min; leaving_city: assembled in 15/25",
          required=True, enum=tuple(RULES)),
    Field("voice", "boolean", "also call commander and deputy, read the order and take a keypad answer"),
    Field("major", "boolean", "a major incident (重大突出事件): teams on scene report the situation every "
          "orders.major_report_minutes, chased when they miss one; the county's leaders are informed"),
    Field("drill", "boolean", "an assembly drill on the real phones: every SMS and spoken message starts "
          "with 【演练】 and its figures are kept apart from real incidents (always true in drill mode)"),
    text("onscene_name", 200 - max(len(r) for r in ONSCENE_COMMANDER.values()) - 1,
         "the name added to the on-scene role, e.g. the deputy county head's"),
)
IDEMPOTENCY_KEY = text("Idempotency-Key", 100, "same key and body within 24 h: the same order (200), not a "
                       "second one; same key with another body: 422", not_blank=True)
CODE = Field("code", "string", "the order's short code", required=True, pattern=r"^[0-9A-Za-z]{1,8}$")
ORDER_CODE = {"type": "object", "required": ["order_code"], "properties": {"order_code": {"type": "string"}}}
CREATED = {"type": "object", "required": ["order_code", "order_id", "teams", "existing"],
           "properties": {"order_code": {"type": "string"}, "order_id": {"type": "integer"},
                          "teams": {"type": "integer"}, "existing": {"type": "boolean"}}}


def _target(value) -> Target:
    try:
        if isinstance(value, str):
            return Target.parse(value)
        how, values = value["how"], value.get("values") or []
        return Target.parse("all" if how == "all" else f"{how}:{','.join(values)}")
    except ValueError as e:
        raise refuse(422, "target", str(e)) from None


def sms_parts(req: OrderRequest, now: datetime, cfg, ref_bits: int) -> int:
    """How many parts the order's SMS will travel in (a 4-digit code, as orders get)."""
    minutes = response_minutes(req.rule, now, cfg)
    message = order_sms("0000", req.incident_ref, req.text, req.onscene_commander(), req.rule, minutes,
                        cfg.major_report_minutes if req.major else 0)
    return len(split_text(message, ref_bits=ref_bits)[1])


def add_order_routes(router: Router, database, orders, clock, *, max_sms_parts: int = 8,
                     ref_bits: int = 8) -> None:
    from gateway.orders.cli import _list_tx
    from gateway.orders.closing import close_order_tx

    def create(req):
        b = req.body
        try:
            order = OrderRequest(incident_ref=b["incident_ref"].strip(), kind=b["kind"], text=b["text"].strip(),
                                 target=_target(b["target"]), rule=b["rule"], voice=b.get("voice", False),
                                 created_by=req.actor, onscene_name=b.get("onscene_name") or None,
                                 major=b.get("major", False), drill=b.get("drill", False))
        except ValueError as e:
            raise refuse(422, "body", str(e)) from None
        now = datetime.fromtimestamp(clock.seconds(), timezone.utc)
        parts = sms_parts(order, now, orders.cfg, ref_bits)
        if parts > max_sms_parts:
            raise refuse(422, "text", f"the order's SMS would need {parts} parts; at most {max_sms_parts} "
                                      "(orders.max_sms_parts): shorten the text", sms_parts=parts)
        idem = req.headers.get("idempotency-key")
        if idem is not None:
            try:
                IDEMPOTENCY_KEY.check(idem)
            except Exception as e:  # noqa: BLE001 - Invalid: the header is the field named
                raise refuse(422, "Idempotency-Key", getattr(e, "message", str(e))) from None
            tx = idempotent_create_tx(req.principal.name if not req.principal.open_access else "open", idem,
                                      request_hash(req.method, req.path, b))
        else:
            tx = None

        def send():
            return orders.send(order, tx) if tx else orders.send(order)

        def done(created):
            body = {"order_code": created.code, "order_id": created.order_id, "teams": len(created.team_ids),
                    "existing": created.existing}
            return (200 if created.existing else 201), body

        def failed(f, again=True):
            if f.check(IntegrityError) and tx and again:
                # A twin request (another process) committed first: this one finds its order.
                return send().addCallbacks(done, failed, errbackKeywords={"again": False})
            if f.check(IdempotencyConflict):
                raise refuse(422, "Idempotency-Key", f"{idem!r} was used within 24 h for a different request; "
                                                     "use a new key for a new order")
            if f.check(NoCommander):
                # The roster's inactive members are never targeted: name the teams left without one.
                raise refuse(422, "target", f.getErrorMessage(), teams=f.value.teams)
            if f.check(NoTeams, LookupError):
                raise refuse(422, "target", f"no team matches target {order.target.describe()}")
            return f
        return send().addCallbacks(done, failed)

    def listing(req):
        all_ = req.query.get("all") in ("1", "true", "yes")

        def done(result):
            rows, counts = result
            return 200, {"orders": [{"order_code": r.code, "incident_ref": r.incident_ref, "kind": r.kind,
                                     "rule": r.rule, "state": r.state, "created_at": r.created_at.isoformat(),
                                     "drill": bool(r.drill),
                                     "teams_by_state": counts.get(r.id, {})} for r in rows]}
        return database.run(_list_tx, all_).addCallback(done)

    def show(req):
        code = req.params["code"]

        def done(s):
            if s is None:
                raise ApiError(404, f"no order {code}", field="code")
            return 200, asdict(s)
        return database.run(load_summary_tx, code, orders.cfg).addCallback(done)

    def close(req):
        code = req.params["code"]
        now = datetime.fromtimestamp(clock.seconds(), timezone.utc)

        def done(c):
            if c is None:
                raise ApiError(404, f"no open order {code}", field="code")
            return 200, {"order_code": code, "state": "closed", **c.as_dict()}
        from gateway.storage.retry import run_retrying_conflicts
        return run_retrying_conflicts(database, close_order_tx, code, req.actor, now).addCallback(done)

    router.add("POST", "/orders", create, scope="dispatch", summary="create and send an order; 201 after COMMIT",
               body=ORDER_BODY, headers=(IDEMPOTENCY_KEY,),
               ok={201: Response("created", CREATED), 200: Response("an Idempotency-Key seen before", CREATED)})
    router.add("GET", "/orders", listing, summary="open orders (all=1: the latest 50) with team counts by state",
               query=(Field("all", "string", "1: closed orders too", enum=("0", "1", "true", "false", "yes", "no")),),
               ok={200: Response("orders", {"type": "object", "required": ["orders"],
                                            "properties": {"orders": {"type": "array"}}})})
    router.add("GET", "/orders/{code}", show, summary="the order summary: per team state, who answered, "
               "time taken, escalation steps", params=(CODE,),
               ok={200: Response("the summary", {"type": "object", "required": ["code", "teams"]})})
    router.add("POST", "/orders/{code}/close", close, scope="dispatch", summary="close an order; its escalation "
               "stops", params=(CODE,), body=(),
               ok={200: Response("closed", ORDER_CODE)})
