"""Webhooks: every event POSTed as JSON to the dispatch software's URLs.

One queue per URL, delivered in order; a failed POST (connection error, timeout, non-2xx) is
retried with exponential backoff on the injected clock, so a dispatch server that is down for a
while gets everything when it comes back.  Each body is signed with HMAC-SHA256 over the exact
bytes (header X-Yihu-Signature) when a secret is configured; the secret never appears in logs.
The queue is bounded: past `max_queue` the oldest events are dropped and counted, and the
receiver can catch up from the event stream or the REST API, which read the database.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from adapters.events import Event

log = Logger()

WEBHOOK_SENT = Counter("yihu_webhook_sent_total", "Events delivered to a webhook", ["target"])
WEBHOOK_FAILED = Counter("yihu_webhook_failures_total", "Failed webhook POSTs (retried)", ["target"])
WEBHOOK_DROPPED = Counter("yihu_webhook_dropped_total", "Events dropped from a full webhook queue", ["target"])
WEBHOOK_QUEUE = Gauge("yihu_webhook_queue_depth", "Events waiting for a webhook", ["target"])


@dataclass(frozen=True)
class WebhookSection:
    urls: list[str] = field(default_factory=list)    # dispatch software's endpoints; every event POSTed to each
    secret: str = ""                      # HMAC key; empty: unsigned
    timeout_s: float = 10.0               # a POST slower than this is retried
    max_queue: int = 10000                # events kept per URL while it is down; the oldest dropped past it
    retry_initial_s: float = 1.0          # first retry delay, doubled each time
    retry_max_s: float = 60.0             # longest retry delay

    def __post_init__(self):
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"urls: {url!r} is not an http(s) URL")


def target_name(url: str) -> str:
    """A label for logs and metrics: scheme, host and path, never credentials or query."""
    p = urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return f"{p.scheme}://{host}{p.path}"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookTarget:
    """Delivers events to one URL, in order, retrying until it succeeds."""

    def __init__(self, clock, url: str, post: Callable[[str, bytes, dict], Deferred], cfg: WebhookSection):
        self.clock, self.url, self.post, self.cfg = clock, url, post, cfg
        self.name = target_name(url)
        self.queue: collections.deque[Event] = collections.deque()
        self.sending = False
        self.stopped = False
        self._retry_call = None
        self.last_error: str | None = None     # of the last POST; None once one succeeded

    def offer(self, event: Event) -> None:
        if len(self.queue) >= self.cfg.max_queue:
            dropped = self.queue.popleft()
            WEBHOOK_DROPPED.labels(self.name).inc()
            log.warn("webhook {target}: queue full, dropped event #{seq} {kind}", target=self.name,
                     seq=dropped.seq, kind=dropped.kind)
        self.queue.append(event)
        WEBHOOK_QUEUE.labels(self.name).set(len(self.queue))
        self._kick()

    def _kick(self):
        if not self.sending and self.queue and not self.stopped:
            self.sending = True
            self._send(self.cfg.retry_initial_s)

    @inlineCallbacks
    def _send(self, backoff: float):
        event = self.queue[0]
        body = json.dumps(event.as_dict(), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Yihu-Event": event.kind,
                   "X-Yihu-Seq": str(event.seq)}
        if self.cfg.secret:
            headers["X-Yihu-Signature"] = sign(self.cfg.secret, body)
        try:
            d = self.post(self.url, body, headers)
            d.addTimeout(self.cfg.timeout_s, self.clock)
            status = yield d
            ok = 200 <= int(status) < 300
            why = f"HTTP {status}"
        except Exception as e:  # noqa: BLE001 - any failure is retried
            ok, why = False, e.__class__.__name__
        if self.stopped:
            return
        self.last_error = None if ok else why
        if ok:
            self.queue.popleft()
            WEBHOOK_SENT.labels(self.name).inc()
            WEBHOOK_QUEUE.labels(self.name).set(len(self.queue))
            self.sending = False
            self._kick()
            return
        WEBHOOK_FAILED.labels(self.name).inc()
        log.warn("webhook {target}: event #{seq} {kind} not delivered ({why}); retry in {delay}s",
                 target=self.name, seq=event.seq, kind=event.kind, why=why, delay=backoff)
        self._retry_call = self.clock.callLater(backoff, self._send, min(backoff * 2, self.cfg.retry_max_s))

    def stop(self):
        self.stopped = True
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()


def agent_post(reactor):
    """POST with twisted.web's Agent; fires with the response code."""
    from twisted.web.client import Agent, FileBodyProducer, readBody
    from twisted.web.http_headers import Headers
    import io
    agent = Agent(reactor)

    @inlineCallbacks
    def post(url: str, body: bytes, headers: dict):
        h = Headers({k.encode(): [v.encode()] for k, v in headers.items()})
        response = yield agent.request(b"POST", url.encode(), h, FileBodyProducer(io.BytesIO(body)))
        yield readBody(response)
        return response.code
    return post


class Webhooks:
    """Subscribes to the bus and feeds every configured target."""

    def __init__(self, clock, bus, cfg: WebhookSection, post=None):
        self.targets = [WebhookTarget(clock, url, post or agent_post(clock), cfg) for url in cfg.urls]
        self._unsubscribe = bus.subscribe(self._on_event) if self.targets else None

    def health(self):
        """One part per URL: down while its last POST failed (events are piling up for it)."""
        from gateway.health import PartHealth, off
        if not self.targets:
            return off("webhooks", "no webhooks.urls configured")
        return [PartHealth(f"webhook {t.name}", t.last_error is None,
                           f"{len(t.queue)} waiting" + (f"; last POST failed: {t.last_error}" if t.last_error else ""))
                for t in self.targets]

    def _on_event(self, event: Event):
        for t in self.targets:
            t.offer(event)

    def stop(self):
        if self._unsubscribe:
            self._unsubscribe()
        for t in self.targets:
            t.stop()
