"""GET /events: the event stream for dispatch software, as Server-Sent Events.

Each event's SSE id is its id in the event log.  A client that reconnects sends Last-Event-ID
(or ?since=N; since=0 replays the whole log kept) and gets every event after it, read from the
log, then live events, with no gap and no duplicate: one cursor moves over final ids only (see
gateway/eventlog.py), first through the log, then through the tail's memory, and the switch to
live happens in one reactor turn, so no event committed meanwhile falls between the two.
Without either, the stream starts live.  ?kind=order (or order.feedback, repeatable) filters.
A comment line every `keepalive` seconds keeps proxies from closing an idle stream.
"""
from __future__ import annotations

import json

from twisted.internet import task
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from adapters.api import write_json
from adapters.events import Event, EventTail
from adapters.http import JsonResource
from adapters.masking import mask_phones

log = Logger()


def _frame(event: Event, full_numbers: bool = False) -> bytes:
    """One SSE frame; phone numbers masked to their last four digits unless the key may see them."""
    body = event.body if full_numbers else json.dumps(mask_phones(event.as_dict()), ensure_ascii=False).encode()
    return f"id: {event.id}\nevent: {event.kind}\ndata: ".encode() + body + b"\n\n"


@implementer(IPushProducer)
class _Client:
    """One stream: replay from the log, then live.  It is the request's producer: a client that
    reads slowly pauses the replay instead of filling memory, and a live client that falls
    `max_behind` events behind is closed (it resumes from the log with its Last-Event-ID)."""

    def __init__(self, request, tail: EventTail, cursor: int | None, kinds: set[str], max_behind: int,
                 full_numbers: bool = False):
        self.request, self.tail, self.cursor, self.kinds = request, tail, cursor, kinds
        self.full_numbers = full_numbers
        self.closed = self.paused = self.waiting = False
        self.unsubscribe = None
        self.max_behind, self.behind = max_behind, 0

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused, self.behind = False, 0
        if self.waiting:
            self.waiting = False
            self._pump()

    def stopProducing(self):
        self.closed = True

    def start(self):
        self.tail.when_ready().addCallback(self._ready).addErrback(self._failed)

    def _ready(self, head):
        if self.cursor is None:
            self.cursor = self.tail.head
        self.request.registerProducer(self, True)
        self._pump()

    def _pump(self, _=None):
        if self.closed:
            return
        if self.paused:
            self.waiting = True
            return
        if self.tail.in_memory(self.cursor):
            for e in self.tail.since(self.cursor):
                self._send(e)
            self.unsubscribe = self.tail.subscribe(self._live)
            return
        d = self.tail.read(self.cursor)
        d.addCallback(self._replayed)
        d.addErrback(self._failed)

    def _replayed(self, result):
        events, upto = result
        for e in events:
            self._send(e)
        self.cursor = max(self.cursor, upto)
        self._pump()

    def _failed(self, f):
        log.error("event stream: reading the log after #{cursor} failed ({err}); closing the stream",
                  cursor=self.cursor, err=f.getErrorMessage())
        self._finish()

    def _live(self, e: Event):
        if self.paused and not self.closed:
            self.behind += 1
            if self.behind > self.max_behind:
                log.warn("event stream: a client fell {n} events behind at #{cursor}; closed (it resumes "
                         "from the log with Last-Event-ID)", n=self.behind, cursor=self.cursor)
                self._finish()
                return
        self._send(e)

    def _finish(self):
        if not self.closed:
            self.close(None)
            self.request.unregisterProducer()
            self.request.finish()

    def _send(self, e: Event):
        if self.closed or e.id <= self.cursor:
            return
        self.cursor = e.id
        if not self.kinds or e.kind in self.kinds or e.kind.split(".")[0] in self.kinds:
            self.request.write(_frame(e, self.full_numbers))

    def close(self, _):
        self.closed = True
        if self.unsubscribe is not None:
            self.unsubscribe()


class EventStreamResource(JsonResource):
    isLeaf = True

    def __init__(self, tail: EventTail, clock, keepalive: float = 15.0, max_behind: int = 10000):
        super().__init__()
        self.tail, self.clock, self.keepalive, self.max_behind = tail, clock, keepalive, max_behind

    def render_GET(self, request):
        since = request.getHeader(b"last-event-id") or (request.args.get(b"since") or [None])[0]
        try:
            cursor = None if since is None else int(since)
            if cursor is not None and cursor < 0:
                raise ValueError
        except (TypeError, ValueError):
            write_json(request, 422, {"error": "Last-Event-ID / since must be an event id (a whole number, 0 or more)",
                                      "field": "since"})
            return NOT_DONE_YET
        principal = getattr(request, "principal", None)
        full = principal is not None and principal.sees_full_numbers
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        kinds = {k.decode(errors="replace") for k in request.args.get(b"kind", [])}
        client = _Client(request, self.tail, cursor, kinds, self.max_behind, full)
        request.write(b": yihu event stream\n\n")      # headers out now, even before the first event
        client.start()
        ping = task.LoopingCall(request.write, b": keepalive\n\n")
        ping.clock = self.clock
        ping.start(self.keepalive, now=False)

        def closed(reason):
            client.close(reason)
            if ping.running:
                ping.stop()
        request.notifyFinish().addBoth(closed)
        return NOT_DONE_YET
