"""API routes for the hotlines: what call-takers' and supervisors' software reads and marks.

    GET  /hotline/calls[?day=YYYY-MM-DD&line=110&outcome=...]   calls of a local day
    GET  /hotline/calls/{call_id}
    POST /hotline/calls/{call_id}/mark      {"valid": true, "category": "..."}
    GET  /hotline/callbacks                  unanswered calls (abandoned or cut off) to call back
    POST /hotline/callbacks/{call_id}/done   {}
    GET  /hotline/figures[?day=YYYY-MM-DD|month=YYYY-MM]  per line: calls, answered, abandoned, valid,
                                             mean/p90 to answer, valid-call rate, share from flagged numbers
    GET  /hotline/callers/{number}           read      the number's history and flags
    GET  /hotline/nuisance[?all=true]        read      the nuisance list
    POST /hotline/nuisance                   dispatch  {"number", "reason", "days"?, "notice"?}
    POST /hotline/nuisance/{number}/remove   dispatch  {}

Who marked a call, called back, or changed the nuisance list is the API key's name, never a word
of the body.  The nuisance list never blocks a call: it changes what call-takers see, nothing else.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from adapters.api import ApiError, Router
from adapters.contract import Field, Response, text
from gateway.hotline import callers as caller_history, nuisance, store

LINES = ("110", "119", "122")
OUTCOMES = ("answered", "abandoned_ivr", "abandoned_queue", "failed", "live")

CALL_ID = text("call_id", 64, "the Asterisk Linkedid of the caller's channel", required=True, not_blank=True)
DAY = Field("day", "string", "a local day (gateway.time_zone), YYYY-MM-DD; default today", fmt="date",
            pattern=r"^\d{4}-\d{2}-\d{2}$")
MARK_BODY = (Field("valid", "boolean", "a real emergency (true) or not (false)", required=True),
             text("category", 80, "e.g. 火警, 交通事故, 误拨", required=True, not_blank=True))
NUMBER = text("number", 40, "a phone number as the caller ID shows it", required=True, not_blank=True)
MAX_NUISANCE_DAYS = 3650
NUISANCE_BODY = (text("number", 40, "the phone number", required=True, not_blank=True),
                 text("reason", 200, "why it is listed (shown to call-takers)", required=True, not_blank=True),
                 Field("days", "integer", f"how long it stays listed, 1 to {MAX_NUISANCE_DAYS}; omit: until removed"),
                 Field("notice", "boolean", "play the recorded notice while the caller waits in the queue"))
HISTORY = {"type": "object", "required": ["withheld", "flags"],
           "properties": {"withheld": {"type": "boolean"}, "flags": {"type": "array"}}}
CALL = {"type": "object", "required": ["call_id", "line"],
        "properties": {"call_id": {"type": "string"}, "line": {"type": "string"},
                       "caller": {"type": ["string", "null"]}}}


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
            raise ApiError(422, f"day: must be a date YYYY-MM-DD, got {raw!r}", field="day") from None

    def _translate(f):
        if f.check(LookupError):
            raise ApiError(404, f.getErrorMessage().strip("'\""), field="call_id")
        if f.check(ValueError):
            raise ApiError(422, f.getErrorMessage(), field="call_id")
        return f

    def _nuisance_refused(f):
        if f.check(LookupError):
            raise ApiError(404, f.getErrorMessage().strip("'\""), field="number")
        if f.check(ValueError):
            msg = f.getErrorMessage()
            raise ApiError(422, msg, field="reason" if "reason" in msg else "number")
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
        month = req.query.get("month")
        if month:
            try:
                y, m = (int(x) for x in month.split("-"))
                date(y, m, 1)
            except ValueError:
                raise ApiError(422, f"month: must be a month YYYY-MM, got {month!r}", field="month") from None
            return database.run(store.month_figures, y, m, time_zone) \
                .addCallback(lambda figs: (200, {"month": month, "time_zone": time_zone, "lines": figs}))
        day = _day(req)
        return database.run(store.line_figures, day, time_zone) \
            .addCallback(lambda figs: (200, {"day": day.isoformat(), "time_zone": time_zone, "lines": figs}))

    def caller(req):
        return database.run(caller_history.history_tx, req.params["number"], _now(), callers_cfg) \
            .addCallback(lambda h: (200, h))

    def nuisance_list(req):
        all_ = req.query.get("all") == "true"
        return database.run(nuisance.listing, _now(), all_).addCallback(lambda rows: (200, {"numbers": rows}))

    def _changed(result):
        if on_nuisance_change is not None:
            on_nuisance_change()
        return result

    def nuisance_add(req):
        b = req.body
        days = b.get("days")
        if days is not None and not 1 <= days <= MAX_NUISANCE_DAYS:
            raise ApiError(422, f"days: from 1 to {MAX_NUISANCE_DAYS} (omit it: until removed), got {days}",
                           field="days")
        now = _now()
        expires = now + timedelta(days=days) if days else None
        return database.run(nuisance.add, b["number"], b["reason"], req.actor, now, expires, b.get("notice", False)) \
            .addCallbacks(lambda e: (201, e), _nuisance_refused).addCallback(_changed)

    def nuisance_remove(req):
        number = req.params["number"]
        return database.run(nuisance.remove, number, req.actor, _now()) \
            .addCallbacks(lambda n: (200, {"number": nuisance.number_key(number), "removed": n}), _nuisance_refused) \
            .addCallback(_changed)

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
               "and p90 time to answer, valid-call rate and share of calls from flagged numbers; of a day or a month",
               query=(DAY, Field("month", "string", "a month, YYYY-MM (instead of day)", pattern=r"^\d{4}-\d{2}$")),
               ok={200: Response("the figures", {"type": "object", "required": ["lines"]})})
    router.add("GET", "/hotline/callers/{number}", caller, summary="a number's caller history: calls in 24 h and "
               "30 days, how they were marked, the last one, flags and any nuisance entry", params=(NUMBER,),
               ok={200: Response("the history", HISTORY)})
    router.add("GET", "/hotline/nuisance", nuisance_list, summary="the nuisance list (active entries; all=true: "
               "also expired and removed ones)", query=(Field("all", "string", "true: every entry", enum=("true", "false")),),
               ok={200: Response("the list", {"type": "object", "required": ["numbers"]})})
    router.add("POST", "/hotline/nuisance", nuisance_add, scope="dispatch", body=NUISANCE_BODY,
               summary="put a number on the nuisance list (never blocks a call; the key's name is recorded)",
               ok={201: Response("the entry", {"type": "object", "required": ["number"]})})
    router.add("POST", "/hotline/nuisance/{number}/remove", nuisance_remove, scope="dispatch", params=(NUMBER,),
               body=(), summary="take a number off the nuisance list (the key's name is recorded)",
               ok={200: Response("how many entries were closed", {"type": "object", "required": ["number"]})})
