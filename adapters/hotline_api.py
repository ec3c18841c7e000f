"""API routes for the hotlines: what call-takers' and supervisors' software reads and marks.

    GET  /hotline/calls[?day=YYYY-MM-DD&line=110&outcome=...]   calls of a local day
    GET  /hotline/calls/{call_id}
    POST /hotline/calls/{call_id}/mark      {"valid": true, "category": "...", "by": "..."}
    GET  /hotline/callbacks                  abandoned calls still to call back
    POST /hotline/callbacks/{call_id}/done   {"by": "..."}
    GET  /hotline/figures[?day=YYYY-MM-DD|month=YYYY-MM]  per line: calls, answered, abandoned, valid,
                                             mean/p90 to answer, valid-call rate, share from flagged numbers
    GET  /hotline/callers/{number}           read      the number's history and flags
    GET  /hotline/nuisance[?all=1]           read      the nuisance list
    POST /hotline/nuisance                   dispatch  {"number", "reason", "by", "days"?, "notice"?}
    POST /hotline/nuisance/{number}/remove   dispatch  {"by"}
The nuisance list never blocks a call: it changes what call-takers see, nothing else.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from adapters.api import ApiError, Router, require
from gateway.hotline import callers as caller_history, nuisance, store

LINES = ("110", "119", "122")
OUTCOMES = ("answered", "abandoned_ivr", "abandoned_queue", "failed", "live")


def add_hotline_routes(router: Router, database, time_zone: str, callers=None, clock=None,
                       on_nuisance_change=None) -> None:
    tz = ZoneInfo(time_zone)
    callers_cfg = callers or caller_history.HotlineSection()

    def _now():
        return datetime.fromtimestamp(clock.seconds(), timezone.utc) if clock else datetime.now(timezone.utc)

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
        month = req.query.get("month")
        if month:
            try:
                y, m = (int(x) for x in month.split("-"))
                date(y, m, 1)
            except ValueError:
                raise ApiError(400, f"month must be YYYY-MM, got {month!r}") from None
            return database.run(store.month_figures, y, m, time_zone) \
                .addCallback(lambda figs: (200, {"month": month, "time_zone": time_zone, "lines": figs}))
        day = _day(req)
        return database.run(store.line_figures, day, time_zone) \
            .addCallback(lambda figs: (200, {"day": day.isoformat(), "time_zone": time_zone, "lines": figs}))

    def caller(req):                                                   # scope: read
        return database.run(caller_history.history_tx, req.params["number"], _now(), callers_cfg) \
            .addCallback(lambda h: (200, h))

    def nuisance_list(req):                                            # scope: read
        all_ = req.query.get("all") in ("1", "true", "yes")
        return database.run(nuisance.listing, _now(), all_).addCallback(lambda rows: (200, {"numbers": rows}))

    def _changed(result):
        if on_nuisance_change is not None:
            on_nuisance_change()
        return result

    def nuisance_add(req):                                             # scope: dispatch
        b = req.body
        number = require(b, "number", str, "the phone number")
        reason = require(b, "reason", str, "text")
        by = require(b, "by", str, "the dispatcher's name")
        days = b.get("days")
        if days is not None and (isinstance(days, bool) or not isinstance(days, (int, float)) or days <= 0):
            raise ApiError(400, "field days must be a positive number (omit it: until removed)")
        notice = b.get("notice", False)
        if not isinstance(notice, bool):
            raise ApiError(400, "field notice must be true or false")
        now = _now()
        expires = now + timedelta(days=days) if days else None
        return database.run(nuisance.add, number, reason, f"api:{by}", now, expires, notice) \
            .addCallbacks(lambda e: (201, e), _translate).addCallback(_changed)

    def nuisance_remove(req):                                          # scope: dispatch
        by = require(req.body, "by", str, "the dispatcher's name")
        number = req.params["number"]
        return database.run(nuisance.remove, number, f"api:{by}", _now()) \
            .addCallbacks(lambda n: (200, {"number": nuisance.number_key(number), "removed": n}), _translate) \
            .addCallback(_changed)

    router.add("GET", "/hotline/calls", calls)
    router.add("GET", "/hotline/calls/{call_id}", one)
    router.add("POST", "/hotline/calls/{call_id}/mark", mark)
    router.add("GET", "/hotline/callbacks", callbacks)
    router.add("POST", "/hotline/callbacks/{call_id}/done", callback_done)
    router.add("GET", "/hotline/figures", figures)                             # scope: read
    router.add("GET", "/hotline/callers/{number}", caller)                     # scope: read
    router.add("GET", "/hotline/nuisance", nuisance_list)                      # scope: read
    router.add("POST", "/hotline/nuisance", nuisance_add)                      # scope: dispatch
    router.add("POST", "/hotline/nuisance/{number}/remove", nuisance_remove)   # scope: dispatch
