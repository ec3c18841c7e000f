"""GET /events: the event stream for dispatch software, as Server-Sent Events.

A client that reconnects sends Last-Event-ID (or ?since=N) and gets what it missed, as far as
the bus still holds it.  A comment line every `keepalive` seconds keeps proxies from closing an
idle stream and lets the gateway notice a vanished client.
"""
from __future__ import annotations

import json

from twisted.internet import task
from twisted.web.server import NOT_DONE_YET

from adapters.api import write_json
from adapters.events import Event, EventBus
from adapters.http import JsonResource
from adapters.masking import mask_phones


def _frame(event: Event, full_numbers: bool = False) -> bytes:
    """One SSE frame; phone numbers masked to their last four digits unless the key may see them."""
    data = json.dumps(event.as_dict() if full_numbers else mask_phones(event.as_dict()), ensure_ascii=False)
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode()


class EventStreamResource(JsonResource):
    isLeaf = True

    def __init__(self, bus: EventBus, clock, keepalive: float = 15.0):
        super().__init__()
        self.bus, self.clock, self.keepalive = bus, clock, keepalive

    def render_GET(self, request):
        since = request.getHeader(b"last-event-id") or (request.args.get(b"since") or [b"0"])[0]
        try:
            since_seq = int(since)
        except (TypeError, ValueError):
            write_json(request, 422, {"error": "Last-Event-ID / since must be an event number", "field": "since"})
            return NOT_DONE_YET
        principal = getattr(request, "principal", None)
        full = principal is not None and principal.sees_full_numbers
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        kinds = {k.decode() for k in request.args.get(b"kind", [])}

        def send(event: Event):
            if not kinds or event.kind in kinds or event.kind.split(".")[0] in kinds:
                request.write(_frame(event, full))

        for event in self.bus.since(since_seq):
            send(event)
        unsubscribe = self.bus.subscribe(send)
        ping = task.LoopingCall(request.write, b": keepalive\n\n")
        ping.clock = self.clock
        ping.start(self.keepalive, now=False)

        def closed(_):
            unsubscribe()
            if ping.running:
                ping.stop()
        request.notifyFinish().addBoth(closed)
        return NOT_DONE_YET
