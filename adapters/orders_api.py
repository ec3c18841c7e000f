"""API routes for orders: what dispatch software sends and reads.

    POST /orders               create and send an order (Idempotency-Key honoured); 201 after COMMIT
    GET  /orders[?all=1]       open orders (or the latest 50) with per-state team counts
    GET  /orders/{code}        the order summary: per team state, who answered, time taken, steps
    POST /orders/{code}/close  close an order: its escalation stops
"""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone

from adapters.api import ApiError, Router, require
from gateway.orders.order import KINDS, OrderRequest, Target
from gateway.orders.store import NoTeams
from gateway.orders.summary import load_summary_tx


def _target(value) -> Target:
    try:
        if isinstance(value, str):
            return Target.parse(value)
        if isinstance(value, dict):
            how = value.get("how")
            values = value.get("values") or []
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError("target.values must be a list of strings")
            return Target.parse("all" if how == "all" else f"{how}:{','.join(values)}")
    except ValueError as e:
        raise ApiError(400, str(e)) from None
    raise ApiError(400, 'target must be "all", "kind:K", "township:T", "teams:A,B" or {"how": ..., "values": [...]}')


def _summary_json(s) -> dict:
    d = asdict(s)
    return d


def add_order_routes(router: Router, database, orders, clock) -> None:
    from gateway.orders.cli import _list_tx
    from gateway.orders.closing import close_order_tx

    def create(req):
        b = req.body
        try:
            order = OrderRequest(
                incident_ref=require(b, "incident_ref", str, "text"),
                kind=require(b, "kind", str, f"one of {', '.join(KINDS)}"),
                text=require(b, "text", str, "text"),
                target=_target(require(b, "target", (str, dict), "a target")),
                rule=require(b, "rule", str, "same_township or leaving_city"),
                voice=bool(b.get("voice", False)),
                created_by=f"api:{b.get('created_by') or req.headers.get('x-yihu-client', 'dispatch')}"[:100],
                idempotency_key=req.headers.get("idempotency-key") or b.get("idempotency_key"),
                onscene_name=b.get("onscene_name"))
        except ValueError as e:
            raise ApiError(400, str(e)) from None

        def done(created):
            body = {"order_code": created.code, "order_id": created.order_id, "teams": len(created.team_ids),
                    "existing": created.existing}
            return (200 if created.existing else 201), body

        def no_teams(f):
            f.trap(NoTeams, LookupError)
            raise ApiError(422, f"no team matches target {order.target.describe()}: {f.getErrorMessage()}")
        return orders.send(order).addCallbacks(done, no_teams)

    def listing(req):
        all_ = req.query.get("all") in ("1", "true", "yes")

        def done(result):
            rows, counts = result
            return 200, {"orders": [{"order_code": r.code, "incident_ref": r.incident_ref, "kind": r.kind,
                                     "rule": r.rule, "state": r.state, "created_at": r.created_at.isoformat(),
                                     "teams_by_state": counts.get(r.id, {})} for r in rows]}
        return database.run(_list_tx, all_).addCallback(done)

    def show(req):
        code = req.params["code"]

        def done(s):
            if s is None:
                raise ApiError(404, f"no order {code}")
            return 200, _summary_json(s)
        return database.run(load_summary_tx, code, orders.cfg).addCallback(done)

    def close(req):
        code = req.params["code"]
        by = (req.body or {}).get("by") or req.headers.get("x-yihu-client", "dispatch")
        now = datetime.fromtimestamp(clock.seconds(), timezone.utc)

        def done(c):
            if c is None:
                raise ApiError(404, f"no open order {code}")
            return 200, {"order_code": code, "state": "closed", **c.as_dict()}
        return database.run(close_order_tx, code, f"api:{by}"[:100], now).addCallback(done)

    router.add("POST", "/orders", create)
    router.add("GET", "/orders", listing)
    router.add("GET", "/orders/{code}", show)
    router.add("POST", "/orders/{code}/close", close)
