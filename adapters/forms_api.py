"""API routes for the formal feedback form (正式反馈单) of one team on one order.

    GET /orders/{code}/teams/{team}/report[?format=html|pdf]   the form (JSON), or printed as one page
    PUT /orders/{code}/teams/{team}/report                  a dispatcher completes or corrects it
"""
from __future__ import annotations

from datetime import datetime, timezone

from twisted.internet import defer

from adapters.api import ApiError, RawBody, Router
from adapters.contract import Field, Response, text
from adapters.orders_api import CODE
from gateway.feedback import form as ff
from gateway.feedback import form_store
from gateway.feedback.form_pdf import find_converter, html_to_pdf
from gateway.feedback.form_print import render_html

TEAM = Field("team", "string", "the team's code", required=True, pattern=r"^[A-Za-z0-9_-]{1,32}$")
FORM_BODY = (
    text(ff.RESULT, ff.LIMITS[ff.RESULT], "处置结果: the result of handling", multiline=True),
    Field(ff.FOLLOW_UP, "boolean", "需后续处置: follow-up needed"),
    text(ff.PERSON, ff.LIMITS[ff.PERSON], "责任人: the responsible person (required with follow-up)"),
    text(ff.UNIT, ff.LIMITS[ff.UNIT], "责任单位: the responsible unit (required with follow-up)"),
    text(ff.CASUALTIES, ff.LIMITS[ff.CASUALTIES], "伤亡/损失: casualties and losses (\"无\" when none)",
         multiline=True),
    text(ff.REMARKS, ff.LIMITS[ff.REMARKS], "备注: remarks", multiline=True),
)
FORM = {"type": "object", "required": ["order_code", "team", "complete", "missing"],
        "properties": {"order_code": {"type": "string"}, "team": {"type": "string"},
                       "complete": {"type": "boolean"}, "missing": {"type": "array", "items": {"type": "string"}}}}


def add_form_routes(router: Router, database, orders, clock, time_zone: str, pdf_converter: str = "") -> None:
    def show(req):
        code, team = req.params["code"], req.params["team"]
        fmt = req.query.get("format")
        converter = find_converter(pdf_converter) if fmt == "pdf" else None
        if fmt == "pdf" and converter is None:
            raise ApiError(501, "no PDF converter installed (chromium or wkhtmltopdf; orders.pdf_converter); "
                                "use format=html and print it", field="format")

        def done(found):
            if found is None:
                raise ApiError(404, f"order {code} has no team {team}", field="team")
            ot, form = found
            if fmt in ("html", "pdf"):
                page = render_html(ot, form, time_zone)
                if fmt == "html":
                    return 200, RawBody("text/html; charset=utf-8", page.encode())
                return defer.Deferred.fromCoroutine(html_to_pdf(clock, page, converter)).addCallback(
                    lambda pdf: (200, RawBody("application/pdf", pdf)))
            return 200, {"order_code": ot.code, "team": ot.team_code, "team_name": ot.team_name,
                         "finished_at": ot.finished_at, **form_view_of(form)}
        return database.run(form_store.form_for_print_tx, code, team).addCallback(done)

    def put(req):
        code, team = req.params["code"], req.params["team"]
        if not req.body:
            raise ApiError(422, "give at least one field of the form", field="body")
        changes = {k: (v.strip() or None) if isinstance(v, str) else v for k, v in req.body.items()}
        now = datetime.fromtimestamp(clock.seconds(), timezone.utc)

        def done(result):
            fs, ot_id, next_due = result
            if orders.escalation is not None:
                orders.escalation.schedule(ot_id, next_due)
            return 200, {"order_code": code, "team": team, **{k: fs.values.get(k) for k in ff.FIELDS},
                         "complete": fs.complete, "missing": fs.missing}

        def failed(f):
            if f.check(form_store.NotFinished):
                raise ApiError(409, str(f.value), field="team")
            if f.check(LookupError):
                raise ApiError(404, str(f.value), field="team")
            return f
        return database.run(form_store.dispatcher_update_tx, code, team, changes, req.actor, now).addCallbacks(
            done, failed)

    params = (CODE, TEAM)
    router.add("GET", "/orders/{code}/teams/{team}/report", show,
               summary="the team's formal feedback form (正式反馈单); format=html: printed as one page; "
                       "format=pdf: the same page as PDF where a converter is installed (501 otherwise)",
               params=params, query=(Field("format", "string", "html: the printable page; pdf: as PDF",
                                           enum=("json", "html", "pdf")),), errors=(501,),
               ok={200: Response("the form", FORM)})
    router.add("PUT", "/orders/{code}/teams/{team}/report", put, scope="dispatch",
               summary="complete or correct the team's feedback form (after it reported finished); an empty "
                       "text clears a field; the 24 h report deadline is met once the form is complete",
               params=params, body=FORM_BODY, errors=(409,), ok={200: Response("the form now", FORM)})


def form_view_of(form: dict) -> dict:
    values = {k: form.get(k) for k in ff.FIELDS}
    return {**values, "complete": not ff.missing(values) and form.get("updated_at") is not None,
            "missing": ff.missing(values), "updated_by": form.get("updated_by"),
            "updated_at": form.get("updated_at"), "completed_at": form.get("completed_at")}
