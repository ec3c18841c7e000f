"""API routes for CAP alerts and the order proposals they make.

Scopes (wired at merge with the API keys work): dispatch for the POSTs, read for the GETs.

    POST /cap                        dispatch  a CAP 1.2 XML document as the body (any content type);
                                               201 accepted, 200 a duplicate of one taken before,
                                               422 refused (element and reason)
    GET  /cap/alerts                 read      the latest 100 documents and what became of each
    GET  /cap/alerts/{id}            read      one document, raw text included
    GET  /proposals                  read      pending proposals (rules with confirm = true)
    POST /proposals/{id}/confirm     dispatch  {"by": "..."}: the proposal becomes an order; 201
"""
from __future__ import annotations

from adapters.api import ApiError, Router, require
from gateway.cap import store
from gateway.cap.store import ProposalError
from gateway.orders.store import NoTeams


def _id(raw: str, what: str) -> int:
    if not raw.isdigit():
        raise ApiError(400, f"{what} id must be a number, got {raw!r}")
    return int(raw)


def add_cap_routes(router: Router, database, intake, max_bytes: int) -> None:
    def take(req):                                                    # scope: dispatch
        client = req.headers.get("x-yihu-client", "dispatch")

        def done(out):
            if out.state == "refused":
                raise ApiError(422, f"CAP alert refused: {out.element}: {out.reason}", alert_id=out.alert_id,
                               element=out.element, reason=out.reason)
            return (200 if out.state == "duplicate" else 201), out.as_dict()
        return intake.take(req.body, f"api:{client}"[:200], truncated=req.truncated).addCallback(done)

    def alerts(req):                                                  # scope: read
        return database.run(store.list_alerts_tx).addCallback(lambda rows: (200, {"alerts": rows}))

    def alert(req):                                                   # scope: read
        aid = _id(req.params["alert_id"], "alert")

        def done(row):
            if row is None:
                raise ApiError(404, f"no CAP alert {aid}")
            return 200, row
        return database.run(store.get_alert_tx, aid).addCallback(done)

    def proposals(req):                                               # scope: read
        return database.run(store.pending_proposals_tx).addCallback(lambda rows: (200, {"proposals": rows}))

    def confirm(req):                                                 # scope: dispatch
        pid = _id(req.params["proposal_id"], "proposal")
        by = require(req.body, "by", str, "the dispatcher's name").strip()
        if not by:
            raise ApiError(400, "field by must name the dispatcher")

        def done(result):
            created, _req = result
            return (200 if created.existing else 201), {"proposal_id": pid, "order_code": created.code,
                                                        "order_id": created.order_id, "teams": len(created.team_ids),
                                                        "existing": created.existing}

        def failed(f):
            if f.check(ProposalError):
                raise ApiError(409, f.getErrorMessage())
            if f.check(NoTeams):
                raise ApiError(422, f"proposal {pid}: {f.getErrorMessage()}")
            if f.check(LookupError):
                raise ApiError(404, f.getErrorMessage().strip("'\""))
            return f
        return intake.confirm(pid, f"api:{by}"[:100]).addCallbacks(done, failed)

    router.add("POST", "/cap", take, raw_body=max_bytes)             # scope: dispatch
    router.add("GET", "/cap/alerts", alerts)                         # scope: read
    router.add("GET", "/cap/alerts/{alert_id}", alert)               # scope: read
    router.add("GET", "/proposals", proposals)                       # scope: read
    router.add("POST", "/proposals/{proposal_id}/confirm", confirm)  # scope: dispatch
