"""API routes for the hotlines: what call-takers' and supervisors' software reads and marks.

    GET  /hotline/calls[?day=YYYY-MM-DD&line=110&outcome=...]   calls of a local day
    GET  /hotline/calls/{call_id}
    POST /hotline/calls/{call_id}/mark      {"valid": true, "category": "...", "by": "..."}
    GET  /hotline/callbacks                  unanswered calls (abandoned or cut off) to call back
    POST /hotline/callbacks/{call_id}/done   {"by": "..."}
    GET  /hotline/figures[?day=YYYY-MM-DD]   per line: calls, answered, abandoned, valid, mean/p90 to answer
"""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from adapters.api import ApiError, Router, require
from gateway.hotline import store

LINES = ("110", "119", "122")
OUTCOMES = ("answered", "abandoned_ivr", "abandoned_queue", "failed", "live")


def add_hotline_routes(router: Router, database, time_zone: str) -> None:
    tz = ZoneInfo(time_zone)

    def _day(req) -> date:
        raw = req.query.get("day")
        if not raw:
            return datetime.now(tz).date()
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise ApiError(400, f"day must be YYYY-MM-DD, got {raw!r}") from None

    def _translate(f):
        if f.check(LookupError):
            raise ApiError(404, f.getErrorMessage().strip("'\""))
        if f.check(ValueError):
            raise ApiError(400, f.getErrorMessage())
        return f

    def calls(req):
        line, outcome = req.query.get("line"), req.query.get("outcome")
        if line and line not in LINES:
            raise ApiError(400, f"line must be one of {', '.join(LINES)}")
        if outcome and outcome not in OUTCOMES:
            raise ApiError(400, f"outcome must be one of {', '.join(OUTCOMES)}")
        day = _day(req)
        return database.run(store.list_calls, day=day, tz=time_zone, line=line, outcome=outcome, limit=1000) \
            .addCallback(lambda rows: (200, {"day": day.isoformat(), "calls": rows}))

    def one(req):
        cid = req.params["call_id"]

        def done(row):
            if row is None:
                raise ApiError(404, f"no hotline call {cid}")
            return 200, row
        return database.run(store.get_call, cid).addCallback(done)

    def mark(req):
        b = req.body
        valid = require(b, "valid", bool, "true or false")
        category = require(b, "category", str, "text")
        by = require(b, "by", str, "the call-taker's name")
        return database.run(store.mark_call, req.params["call_id"], valid, category, by) \
            .addCallbacks(lambda row: (200, row), _translate)

    def callbacks(req):
        return database.run(store.callback_list).addCallback(lambda rows: (200, {"callbacks": rows}))

    def callback_done(req):
        by = require(req.body, "by", str, "who called back")
        return database.run(store.mark_callback, req.params["call_id"], by) \
            .addCallbacks(lambda row: (200, row), _translate)

    def figures(req):
        day = _day(req)
        return database.run(store.line_figures, day, time_zone) \
            .addCallback(lambda figs: (200, {"day": day.isoformat(), "time_zone": time_zone, "lines": figs}))

    router.add("GET", "/hotline/calls", calls)
    router.add("GET", "/hotline/calls/{call_id}", one)
    router.add("POST", "/hotline/calls/{call_id}/mark", mark)
    router.add("GET", "/hotline/callbacks", callbacks)
    router.add("POST", "/hotline/callbacks/{call_id}/done", callback_done)
    router.add("GET", "/hotline/figures", figures)
