"""API routes for CAP alerts and the order proposals they make.

    POST /cap                        dispatch  a CAP 1.2 XML document as the body (application/xml,
                                               text/xml or application/cap+xml; cap.max_bytes at most);
                                               201 accepted, 200 a duplicate of one taken before,
                                               422 refused (element and reason)
    GET  /cap/alerts                 read      the latest 100 documents and what became of each
    GET  /cap/alerts/{alert_id}      read      one document, raw text included
    GET  /proposals                  read      pending proposals (rules with confirm = true)
    POST /proposals/{proposal_id}/confirm  dispatch  {}: the proposal becomes an order; 201

The source of a document and who confirmed a proposal are the API key's name, never the body's word.
"""
from __future__ import annotations

from adapters.api import ApiError, Router
from adapters.contract import Field, Response
from gateway.cap import store
from gateway.cap.store import ProposalError
from gateway.orders.store import NoTeams

XML_TYPES = ("application/xml", "text/xml", "application/cap+xml")
ALERT_ID = Field("alert_id", "string", "the number of a CAP document as received", required=True,
                 pattern=r"^\d{1,18}$")
PROPOSAL_ID = Field("proposal_id", "string", "the number of an order proposal", required=True, pattern=r"^\d{1,18}$")
OUTCOME = {"type": "object", "required": ["alert_id", "state"],
           "properties": {"alert_id": {"type": "integer"}, "state": {"type": "string"}}}
CONFIRMED = {"type": "object", "required": ["proposal_id", "order_code"],
             "properties": {"proposal_id": {"type": "integer"}, "order_code": {"type": "string"}}}


def add_cap_routes(router: Router, database, intake, max_bytes: int) -> None:
    def take(req):
        def done(out):
            if out.state == "refused":
                raise ApiError(422, f"CAP alert refused: {out.element}: {out.reason}", field="body",
                               alert_id=out.alert_id, element=out.element, reason=out.reason)
            return (200 if out.state == "duplicate" else 201), out.as_dict()
        return intake.take(req.body, req.actor[:200], truncated=req.truncated).addCallback(done)

    def alerts(req):
        return database.run(store.list_alerts_tx).addCallback(lambda rows: (200, {"alerts": rows}))

    def alert(req):
        aid = int(req.params["alert_id"])

        def done(row):
            if row is None:
                raise ApiError(404, f"no CAP alert {aid}", field="alert_id")
            return 200, row
        return database.run(store.get_alert_tx, aid).addCallback(done)

    def proposals(req):
        return database.run(store.pending_proposals_tx).addCallback(lambda rows: (200, {"proposals": rows}))

    def confirm(req):
        pid = int(req.params["proposal_id"])

        def done(result):
            created, _req = result
            return (200 if created.existing else 201), {"proposal_id": pid, "order_code": created.code,
                                                        "order_id": created.order_id, "teams": len(created.team_ids),
                                                        "existing": created.existing}

        def failed(f):
            if f.check(ProposalError):
                raise ApiError(409, f.getErrorMessage(), field="proposal_id")
            if f.check(NoTeams):
                raise ApiError(422, f"proposal {pid}: {f.getErrorMessage()}", field="proposal_id")
            if f.check(LookupError):
                raise ApiError(404, f.getErrorMessage().strip("'\""), field="proposal_id")
            return f
        return intake.confirm(pid, req.actor[:100]).addCallbacks(done, failed)

    router.add("POST", "/cap", take, scope="dispatch", raw_body=XML_TYPES, max_body=max_bytes,
               summary="take a CAP 1.2 alert (XML); the key's name is recorded as its source",
               ok={201: Response("accepted: what became of it", OUTCOME),
                   200: Response("a duplicate of an alert taken before", OUTCOME)})
    router.add("GET", "/cap/alerts", alerts, summary="the latest CAP documents and what became of each",
               ok={200: Response("the documents", {"type": "object", "required": ["alerts"]})})
    router.add("GET", "/cap/alerts/{alert_id}", alert, summary="one CAP document, its raw text included",
               params=(ALERT_ID,), ok={200: Response("the document", {"type": "object", "required": ["id"]})})
    router.add("GET", "/proposals", proposals, summary="order proposals waiting for a person (CAP rules with confirm)",
               ok={200: Response("the proposals", {"type": "object", "required": ["proposals"]})})
    router.add("POST", "/proposals/{proposal_id}/confirm", confirm, scope="dispatch", params=(PROPOSAL_ID,),
               body=(), errors=(409,), summary="confirm a proposal: it becomes an order (the key's name is "
               "recorded as who confirmed)",
               ok={201: Response("the order made", CONFIRMED), 200: Response("confirmed before: the same order",
                                                                             CONFIRMED)})
