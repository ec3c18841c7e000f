"""The event bus, the event stream and webhooks, as dispatch software sees them."""
import json

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.web.server import Site

from adapters.events import EventBus
from adapters.stream import EventStreamResource
from adapters.webhooks import WebhookSection, Webhooks, sign, target_name
from tests.secrets import WEBHOOK_SECRET


def test_bus_numbers_events_and_resumes_from_a_number():
    clock = Clock()
    clock.advance(1_800_000_000)
    bus = EventBus(clock, keep=3)
    got = []
    bus.subscribe(got.append)
    for i in range(5):
        bus.publish("hotline.arrived", {"call_id": f"c{i}"})
    assert [e.seq for e in got] == [1, 2, 3, 4, 5]
    assert [e.seq for e in bus.since(3)] == [4, 5]
    assert [e.seq for e in bus.since(0)] == [3, 4, 5]       # only what it still holds
    assert got[0].at.startswith("2027-01-15T08:00:00")


def test_a_failing_subscriber_does_not_stop_the_others():
    bus = EventBus(Clock())
    got = []
    bus.subscribe(lambda e: 1 / 0)
    bus.subscribe(got.append)
    bus.publish("order.created", {"code": "0427"})
    assert len(got) == 1


class FakePost:
    def __init__(self):
        self.calls = []
        self.answers = []

    def __call__(self, url, body, headers):
        self.calls.append((url, json.loads(body), headers, body))
        return self.answers.pop(0) if self.answers else succeed(200)


def test_webhook_retries_with_backoff_in_order_and_signs():
    clock = Clock()
    bus = EventBus(clock)
    post = FakePost()
    post.answers = [fail(ConnectionRefusedError()), succeed(503), succeed(200), succeed(200)]
    cfg = WebhookSection(urls=["https://user:pw@dispatch.example/hook?token=x"], secret=WEBHOOK_SECRET,
                         retry_initial_s=1, retry_max_s=4)
    Webhooks(clock, bus, cfg, post=post)
    bus.publish("order.escalated", {"code": "0427", "team": "PUB-04"})
    bus.publish("order.feedback", {"code": "0427", "team": "PUB-05"})
    assert len(post.calls) == 1                     # first POST failed; nothing else jumps the queue
    clock.advance(1)
    assert len(post.calls) == 2                     # retried after 1 s, got 503
    clock.advance(1.9)
    assert len(post.calls) == 2                     # backoff doubled to 2 s
    clock.advance(0.1)
    assert len(post.calls) == 4                     # delivered, then the next one at once
    seqs = [c[1]["seq"] for c in post.calls]
    assert seqs == [1, 1, 1, 2]
    url, payload, headers, body = post.calls[-1]
    assert headers["X-Yihu-Signature"] == sign(WEBHOOK_SECRET, body)
    assert payload["kind"] == "order.feedback" and payload["payload"]["team"] == "PUB-05"
    assert target_name(cfg.urls[0]) == "https://dispatch.example/hook"    # no credentials in labels


def test_webhook_times_out_a_hanging_receiver():
    clock = Clock()
    bus = EventBus(clock)
    post = FakePost()
    post.answers = [Deferred(), succeed(200)]
    Webhooks(clock, bus, WebhookSection(urls=["http://127.0.0.1:9/h"], timeout_s=5, retry_initial_s=1), post=post)
    bus.publish("hotline.abandoned", {"call_id": "x"})
    clock.advance(5)          # timed out
    clock.advance(1)          # retried
    assert len(post.calls) == 2


def test_bad_webhook_url_is_refused():
    import pytest
    with pytest.raises(ValueError, match="ftp://x"):
        WebhookSection(urls=["ftp://x"])


class RawClient(Protocol):
    """Reads the raw SSE stream so that the test can close its end when done."""

    def __init__(self, request: bytes, until: bytes):
        self.request, self.until, self.data = request, until, b""
        self.done = Deferred()

    def connectionMade(self):
        self.transport.write(self.request)

    def dataReceived(self, data):
        self.data += data
        if self.until in self.data and not self.done.called:
            self.done.callback(self.data)


@pytest_twisted.inlineCallbacks
def test_event_stream_replays_then_follows_over_http():
    bus = EventBus(reactor)
    bus.publish("hotline.arrived", {"call_id": "a"})
    bus.publish("hotline.answered", {"call_id": "a"})
    port = reactor.listenTCP(0, Site(EventStreamResource(bus, reactor)), interface="127.0.0.1")
    client = RawClient(b"GET / HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\r\n\r\n", b"hotline.ended")
    try:
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        reactor.callLater(0.05, bus.publish, "hotline.ended", {"call_id": "a"})
        text = (yield client.done.addTimeout(5, reactor)).decode()
        assert "200 OK" in text and "text/event-stream" in text
        assert "id: 1\n" not in text                   # the client had seen #1 already
        assert "id: 2\nevent: hotline.answered" in text and "id: 3\nevent: hotline.ended" in text
        assert len(bus._subscribers) == 1
        client.transport.loseConnection()
        yield deferLater(reactor, 0.05, lambda: None)
        assert bus._subscribers == []                  # a vanished client is forgotten
    finally:
        yield port.stopListening()
