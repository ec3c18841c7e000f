"""API routes for the hotlines: what call-takers' and supervisors' software reads and marks.

    GET  /hotline/calls[?day=YYYY-MM-DD&line=110&outcome=...]   calls of a local day
    GET  /hotline/calls/{call_id}
    POST /hotline/calls/{call_id}/mark      {"valid": true, "category": "..."}
    GET  /hotline/callbacks                  unanswered calls (abandoned or cut off) to call back
    POST /hotline/callbacks/{call_id}/done   {}
    GET  /hotline/figures[?day=YYYY-MM-DD]   per line: calls, answered, abandoned, valid, mean/p90 to answer

Who marked a call or called back is the API key's name, never a word of the body.
"""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from adapters.api import ApiError, Router
from adapters.contract import Field, Response, text
from gateway.hotline import store

LINES = ("110", "119", "122")
OUTCOMES = ("answered", "abandoned_ivr", "abandoned_queue", "failed", "live")

CALL_ID = text("call_id", 64, "the Asterisk Linkedid of the caller's channel", required=True, not_blank=True)
DAY = Field("day", "string", "a local day (gateway.time_zone), YYYY-MM-DD; default today", fmt="date",
            pattern=r"^\d{4}-\d{2}-\d{2}$")
MARK_BODY = (Field("valid", "boolean", "a real emergency (true) or not (false)", required=True),
             text("category", 80, "e.g. 火警, 交通事故, 误拨", required=True, not_blank=True))
CALL = {"type": "object", "required": ["call_id", "line"],
        "properties": {"call_id": {"type": "string"}, "line": {"type": "string"},
                       "caller": {"type": ["string", "null"]}}}


def add_hotline_routes(router: Router, database, time_zone: str) -> None:
    tz = ZoneInfo(time_zone)

    def _day(req) -> date:
        raw = req.query.get("day")
        if not raw:
            return datetime.now(tz).date()
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise ApiError(422, f"day: must be a date YYYY-MM-DD, got {raw!r}", field="day") from None

    def _translate(f):
        if f.check(LookupError):
            raise ApiError(404, f.getErrorMessage().strip("'\""), field="call_id")
        if f.check(ValueError):
            raise ApiError(422, f.getErrorMessage(), field="call_id")
        return f

    def calls(req):
        line, outcome = req.query.get("line"), req.query.get("outcome")
        day = _day(req)
        return database.run(store.list_calls, day=day, tz=time_zone, line=line, outcome=outcome, limit=1000) \
            .addCallback(lambda rows: (200, {"day": day.isoformat(), "calls": rows}))

    def one(req):
        cid = req.params["call_id"]

        def done(row):
            if row is None:
                raise ApiError(404, f"no hotline call {cid}", field="call_id")
            return 200, row
        return database.run(store.get_call, cid).addCallback(done)

    def mark(req):
        b = req.body
        return database.run(store.mark_call, req.params["call_id"], b["valid"], b["category"], req.actor) \
            .addCallbacks(lambda row: (200, row), _translate)

    def callbacks(req):
        return database.run(store.callback_list).addCallback(lambda rows: (200, {"callbacks": rows}))

    def callback_done(req):
        return database.run(store.mark_callback, req.params["call_id"], req.actor) \
            .addCallbacks(lambda row: (200, row), _translate)

    def figures(req):
        day = _day(req)
        return database.run(store.line_figures, day, time_zone) \
            .addCallback(lambda figs: (200, {"day": day.isoformat(), "time_zone": time_zone, "lines": figs}))

    listed = {"type": "object", "required": ["day"], "properties": {"day": {"type": "string"}}}
    router.add("GET", "/hotline/calls", calls, summary="hotline calls of a local day",
               query=(DAY, Field("line", "string", "one hotline", enum=LINES),
                      Field("outcome", "string", "answered, abandoned in the IVR or queue, failed, or still live",
                            enum=OUTCOMES)),
               ok={200: Response("the calls", listed)})
    router.add("GET", "/hotline/calls/{call_id}", one, summary="one hotline call", params=(CALL_ID,),
               ok={200: Response("the call", CALL)})
    router.add("POST", "/hotline/calls/{call_id}/mark", mark, scope="dispatch", params=(CALL_ID,), body=MARK_BODY,
               summary="mark a call valid or not, with a category (the key's name is recorded as who marked it)",
               ok={200: Response("the call as marked", CALL)})
    router.add("GET", "/hotline/callbacks", callbacks, summary="abandoned calls still to be called back",
               ok={200: Response("the list", {"type": "object", "required": ["callbacks"]})})
    router.add("POST", "/hotline/callbacks/{call_id}/done", callback_done, scope="dispatch", params=(CALL_ID,),
               body=(), summary="take a call off the call-back list (the key's name is recorded)",
               ok={200: Response("the call", CALL)})
    router.add("GET", "/hotline/figures", figures, summary="per line: calls, answered, abandoned, valid, mean "
               "and p90 time to answer", query=(DAY,),
               ok={200: Response("the figures", listed)})
