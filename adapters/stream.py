"""GET /events: the event stream for dispatch software, as Server-Sent Events.

A client that reconnects sends Last-Event-ID (or ?since=N) and gets what it missed, as far as
the bus still holds it.  A comment line every `keepalive` seconds keeps proxies from closing an
idle stream and lets the gateway notice a vanished client.
"""
from __future__ import annotations

import json

from twisted.internet import task
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from adapters.events import Event, EventBus


def _frame(event: Event) -> bytes:
    data = json.dumps(event.as_dict(), ensure_ascii=False)
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode()


class EventStreamResource(Resource):
    isLeaf = True

    def __init__(self, bus: EventBus, clock, keepalive: float = 15.0):
        super().__init__()
        self.bus, self.clock, self.keepalive = bus, clock, keepalive

    def render_GET(self, request):
        since = request.getHeader(b"last-event-id") or (request.args.get(b"since") or [b"0"])[0]
        try:
            since_seq = int(since)
        except (TypeError, ValueError):
            request.setResponseCode(400)
            return b'{"error": "Last-Event-ID / since must be an event number"}'
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        kinds = {k.decode() for k in request.args.get(b"kind", [])}

        def send(event: Event):
            if not kinds or event.kind in kinds or event.kind.split(".")[0] in kinds:
                request.write(_frame(event))

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
