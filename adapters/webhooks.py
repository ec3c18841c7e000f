"""Webhooks: every event of the log POSTed as JSON to each subscriber, from the log.

Each subscriber has a durable cursor in the database (webhook_subscribers.cursor, the last event
it acknowledged with a 2xx).  Delivery is at least once and in id order: one POST in flight per
subscriber, the next event only after the previous one was acknowledged, a failed POST
(connection error, timeout, non-2xx) retried with exponential backoff on the injected clock.
The cursor is written after the acknowledgement, so a crash between the two sends that event
again (receivers deduplicate on X-Yihu-Event-Id); a receiver down for hours gets everything,
from the log, when it is back, across restarts of the gateway.

An event the subscriber has not acknowledged `dead_letter_after_s` after it was committed is
given up: kept in webhook_dead_letters (listed by `yihu webhook list`, counted in
yihu_webhook_dead_letters_total) and delivery moves on.

Signature (when the subscriber has a secret, its own or webhooks.secret):
    X-Yihu-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
`t` is the time of this POST (a retry is signed afresh), so a receiver refuses a request whose
`t` is more than SIGNATURE_TOLERANCE_S from its own clock: a captured request cannot be
replayed later.  Secrets never appear in logs, metrics or the CLI's output.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit, urlunsplit

from twisted.internet import defer, task
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from adapters import webhook_store as store
from gateway.eventlog import Event
from gateway.health import PartHealth, off
from gateway.metrics import WEBHOOK_BACKLOG, WEBHOOK_DEAD_LETTERS, WEBHOOK_FAILED, WEBHOOK_SENT, WORK_TAKEN_OVER

log = Logger()

SIGNATURE_TOLERANCE_S = 300     # documented for receivers: refuse a signature older or newer than this


@dataclass(frozen=True)
class WebhookSection:
    urls: list[str] = field(default_factory=list)    # subscribers from the file (`yihu webhook add` adds more)
    secret: str = ""                      # HMAC key of subscribers without their own; empty: unsigned
    timeout_s: float = 10.0               # a POST slower than this is retried
    retry_initial_s: float = 1.0          # first retry delay, doubled each time
    retry_max_s: float = 60.0             # longest retry delay
    dead_letter_after_s: float = 86400.0  # an event undelivered this long after it happened is given up
    refresh_s: float = 5.0                # how often subscribers added or removed by the CLI are picked up

    def __post_init__(self):
        for url in self.urls:
            check_url(url)
        if self.dead_letter_after_s < 60:
            raise ValueError("dead_letter_after_s must be at least 60")
        if self.timeout_s <= 0 or self.retry_initial_s <= 0 or self.retry_max_s < self.retry_initial_s:
            raise ValueError("timeout_s and retry_initial_s must be positive, retry_max_s >= retry_initial_s")


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 500:
        raise ValueError(f"urls: {(target_name(url) if parts.netloc else url)!r} is not an http(s) URL")
    return url


def target_name(url: str) -> str:
    """A label for logs and metrics: scheme, host and path, never credentials or query."""
    p = urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return f"{p.scheme}://{host}{p.path}"


def split_credentials(url: str) -> tuple[str, dict]:
    """https://user:pw@host/path -> the URL without them, and an Authorization: Basic header."""
    p = urlsplit(url)
    if p.username is None:
        return url, {}
    netloc = p.hostname + (f":{p.port}" if p.port else "")
    token = base64.b64encode(f"{unquote(p.username)}:{unquote(p.password or '')}".encode()).decode()
    return urlunsplit(p._replace(netloc=netloc)), {"Authorization": f"Basic {token}"}


def sign(secret: str, t: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@implementer(IBodyProducer)
class _Body:
    """The whole body at once (FileBodyProducer would schedule a cooperator task per POST)."""

    def __init__(self, data: bytes):
        self.data, self.length = data, len(data)

    def startProducing(self, consumer):
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def stopProducing(self):
        pass


class _Endpoints:
    """One endpoint per receiver, made once (Agent would IDNA-encode the host on every POST)."""

    def __init__(self, reactor):
        self.reactor, self.cache = reactor, {}

    def endpointForURI(self, uri):
        key = (uri.scheme, uri.host, uri.port)
        if key not in self.cache:
            from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
            ep = HostnameEndpoint(self.reactor, uri.host, uri.port)
            if uri.scheme == b"https":
                from twisted.internet.ssl import optionsForClientTLS
                ep = wrapClientTLS(optionsForClientTLS(uri.host.decode("ascii")), ep)
            self.cache[key] = ep
        return self.cache[key]


def agent_post(reactor):
    """POST with twisted.web's Agent on persistent connections; fires with the response code."""
    from twisted.web.client import Agent, HTTPConnectionPool, readBody
    from twisted.web.http_headers import Headers
    agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor), pool=HTTPConnectionPool(reactor, persistent=True))

    @inlineCallbacks
    def post(url: str, body: bytes, headers: dict):
        h = Headers({k.encode(): [v.encode()] for k, v in headers.items()})
        response = yield agent.request(b"POST", url.encode(), h, _Body(body))
        yield readBody(response)
        return response.code
    return post


def _utc(clock) -> datetime:
    return datetime.fromtimestamp(clock.seconds(), timezone.utc)


def _age(clock, e: Event) -> float:
    return clock.seconds() - datetime.fromisoformat(e.at).timestamp()


class SubscriberDelivery:
    """Delivers the log to one subscriber, in id order, from its durable cursor."""

    BATCH = 100

    def __init__(self, clock, db, tail, sub: store.Subscriber, secret: str, post, cfg: WebhookSection):
        self.clock, self.db, self.tail, self.post, self.cfg = clock, db, tail, post, cfg
        self.id, self.secret = sub.id, secret
        self.url, self.auth = split_credentials(sub.url)
        self.name = target_name(sub.url)
        self.cursor = self.acked = sub.cursor     # in memory / written to the database
        self.stopped = False
        self._busy = self._again = False
        self._retry_call = None
        self._failing_since: float | None = None
        self.last_error: str | None = None        # of the last POST; None once one succeeded
        self._backoff: float | None = None
        self._ack_writing: defer.Deferred | None = None
        self._ack_timer = None
        self._unsubscribe = tail.subscribe(lambda _e: self.kick())

    # --- the loop: read after the cursor, POST one at a time --------------------------------------
    def kick(self) -> None:
        """Deliver what is after the cursor (a new event, a refresh); not during a retry's backoff."""
        if self.stopped or (self._retry_call is not None and self._retry_call.active()):
            return
        if self._busy:
            self._again = True          # looked at again when this round ends
            return
        self._busy, self._again = True, False
        d = self._deliver_some()
        d.addErrback(lambda f: log.failure("webhook {target}: delivery loop failed", f, target=self.name))
        d.addBoth(self._idle)

    def _idle(self, more):
        self._busy = False
        if more is True or self._again:
            self.kick()

    @inlineCallbacks
    def _deliver_some(self):
        """True: more may be waiting; None: caught up or waiting for a retry."""
        events, upto = yield self.tail.read(self.cursor, self.BATCH)
        for i, e in enumerate(events):
            if self.stopped:
                return None
            ok, why = yield self._post(e)
            if ok:
                self._delivered(e)
                continue
            WEBHOOK_FAILED.labels(self.name).inc()
            if _age(self.clock, e) > self.cfg.dead_letter_after_s:
                yield self._give_up(list(itertools.takewhile(
                    lambda x: _age(self.clock, x) > self.cfg.dead_letter_after_s, events[i:])), why)
                return True
            yield self._failing(e, why)
            return None
        if not events or events[-1].id < upto:
            self.cursor = max(self.cursor, upto)        # nothing in between: gaps are final too
        self._update_backlog()
        return True if len(events) == self.BATCH else None

    @inlineCallbacks
    def _post(self, e: Event):
        body = e.body
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Yihu-Event": e.kind,
                   "X-Yihu-Event-Id": str(e.id), **self.auth}
        if self.secret:
            headers["X-Yihu-Signature"] = sign(self.secret, int(self.clock.seconds()), body)
        try:
            d = self.post(self.url, body, headers)
            d.addTimeout(self.cfg.timeout_s, self.clock)
            status = yield d
            return 200 <= int(status) < 300, f"HTTP {status}"
        except Exception as e_:  # noqa: BLE001 - any failure is retried
            return False, e_.__class__.__name__

    def _delivered(self, e: Event) -> None:
        self.cursor = e.id
        WEBHOOK_SENT.labels(self.name).inc()
        if self._failing_since is not None:
            log.info("webhook {target}: delivering again from event #{id}", target=self.name, id=e.id)
        self._failing_since = None
        self.last_error = None
        self._backoff = None
        self._write_ack()

    def _failing(self, e: Event, why: str):
        now = self.clock.seconds()
        self.last_error = f"event #{e.id}: {why}"
        first = self._failing_since is None
        if first:
            self._failing_since = now
        delay = self._next_delay()
        log.warn("webhook {target}: event #{id} {kind} not delivered ({why}); retry in {delay:g} s",
                 target=self.name, id=e.id, kind=e.kind, why=why, delay=delay)
        self._retry_call = self.clock.callLater(delay, self.kick)
        self._update_backlog()
        if first:
            return self.db.run(store.failing_tx, self.id, _utc(self.clock), f"event #{e.id}: {why}").addErrback(
                lambda f: log.error("webhook {target}: recording the failure: {err}", target=self.name,
                                    err=f.getErrorMessage()))
        return defer.succeed(None)

    def _next_delay(self) -> float:
        self._backoff = self.cfg.retry_initial_s if self._backoff is None else min(self._backoff * 2,
                                                                                   self.cfg.retry_max_s)
        return self._backoff

    @inlineCallbacks
    def _give_up(self, events: list[Event], why: str):
        log.error("webhook {target}: {n} event(s) #{first}..#{last} undelivered for more than {age:g} s ({why}); "
                  "moved to the dead letters", target=self.name, n=len(events), first=events[0].id,
                  last=events[-1].id, age=self.cfg.dead_letter_after_s, why=why)
        yield self._ack_writing_done()
        yield self.db.run(store.dead_letter_tx, self.id, events, why, _utc(self.clock))
        WEBHOOK_DEAD_LETTERS.labels(self.name).inc(len(events))
        self.cursor = self.acked = max(self.cursor, events[-1].id)

    # --- the durable cursor: one write in flight, the newest position wins, at most every
    # ACK_INTERVAL_S (a crash repeats at most that much: at least once, not exactly once) ----------
    ACK_INTERVAL_S = 0.25

    def _write_ack(self, now: bool = False) -> None:
        if now and self._ack_timer is not None and self._ack_timer.active():
            self._ack_timer.cancel()
        if self._ack_writing is not None or self.cursor <= self.acked or (
                self._ack_timer is not None and self._ack_timer.active()):
            return
        target = self.cursor

        def written(_):
            self.acked = max(self.acked, target)
            self._ack_writing = None
            if self.stopped:
                self._write_ack(now=True)
            else:
                self._ack_timer = self.clock.callLater(self.ACK_INTERVAL_S, self._write_ack)

        def failed(f):
            self._ack_writing = None
            log.error("webhook {target}: saving its cursor #{id} failed ({err}); kept in memory, retried on the "
                      "next delivery", target=self.name, id=target, err=f.getErrorMessage())
        self._ack_writing = self.db.run(store.ack_tx, self.id, target, _utc(self.clock))
        self._ack_writing.addCallbacks(written, failed)

    def _ack_writing_done(self):
        if self._ack_writing is None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._ack_writing.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    def health(self):
        """Down while its POSTs fail (events pile up behind its cursor)."""
        behind = self.tail.behind(self.cursor)
        waiting = "caught up" if behind == 0 else (f"{behind} waiting" if behind is not None else "far behind")
        failing = (f"; failing for {self.clock.seconds() - self._failing_since:.0f} s, last POST: {self.last_error}"
                   if self._failing_since is not None else "")
        return PartHealth(f"webhook {self.name}", self._failing_since is None, waiting + failing)

    def _update_backlog(self) -> None:
        behind = self.tail.behind(self.cursor)
        if behind is not None:
            WEBHOOK_BACKLOG.labels(self.name).set(behind)

    def stop(self):
        """Stop delivering; fires once the last acknowledged position is written."""
        self.stopped = True
        self._unsubscribe()
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._write_ack(now=True)
        return self._ack_writing_done()


class Webhooks:
    """The subscribers (from the file and the CLI), each with its delivery."""

    def __init__(self, clock, db, tail, cfg: WebhookSection, post=None, claimer=None):
        """claimer (gateway.cluster.claims.Claimer): deliver only to the subscribers this node
        claimed (one node per subscriber); None: to every subscriber (one gateway)."""
        self.clock, self.db, self.tail, self.cfg = clock, db, tail, cfg
        self.claimer = claimer
        self.post = post or agent_post(clock)
        self.deliveries: dict[int, SubscriberDelivery] = {}
        self._synced = False
        self._stopped = False
        self._refresh = task.LoopingCall(self.refresh)
        self._refresh.clock = clock

    @inlineCallbacks
    def start(self):
        self._stopped = False
        yield self.refresh()
        if self._stopped:
            # Stopped while the first refresh was in the database (a gateway that could not
            # start stops at once): what that refresh set going is stopped too, and no loop runs.
            yield self._stop_deliveries()
            return
        self._refresh.start(self.cfg.refresh_s, now=False)

    @inlineCallbacks
    def refresh(self):
        """Start deliveries for new subscribers, stop those removed, and count far backlogs.
        Never fails (the loop calling it would stop): a database error waits for the next one."""
        try:
            yield self._refresh_once()
        except Exception as e:  # noqa: BLE001
            log.error("webhooks: refreshing the subscribers failed ({err}); trying again in {s:g} s",
                      err=e, s=self.cfg.refresh_s)

    @inlineCallbacks
    def _refresh_once(self):
        if not self._synced:         # webhooks.urls, once per start (again until it succeeds)
            added, removed = yield self.db.run(store.sync_config_tx, list(self.cfg.urls), _utc(self.clock))
            self._synced = True
            if added or removed:
                log.info("webhooks: {a} subscriber(s) added and {r} removed from webhooks.urls", a=added,
                         r=removed)
        if self.claimer is None:
            subs = yield self.db.run(store.load_tx)
        else:
            subs, taken = yield self.db.run(store.claim_tx, self.claimer, _utc(self.clock))
            if taken:
                WORK_TAKEN_OVER.labels(kind="webhook_cursor").inc(taken)
                log.warn("webhooks: {n} subscriber(s) of dead nodes taken over; delivering from their cursors",
                         n=taken)
        live = {s.id for s in subs}
        for sid in [i for i in self.deliveries if i not in live]:
            d = self.deliveries.pop(sid)
            log.info("webhook {target}: removed (or delivered by another node now); delivery stopped",
                     target=d.name)
            d.stop()
        for s in subs:
            if s.id not in self.deliveries:
                secret = s.secret or self.cfg.secret
                if not secret:
                    log.warn("webhook {target}: no secret, its events go out unsigned", target=target_name(s.url))
                d = self.deliveries[s.id] = SubscriberDelivery(self.clock, self.db, self.tail, s, secret, self.post,
                                                               self.cfg)
                log.info("webhook {target}: delivering after event #{cursor}", target=d.name, cursor=s.cursor)
                d.kick()
        for d in self.deliveries.values():
            if self.tail.behind(d.cursor) is None:
                behind = yield self.db.run(store.backlog_tx, d.cursor)
                WEBHOOK_BACKLOG.labels(d.name).set(behind)
            else:
                d.kick()

    def health(self):
        """One part per subscriber: down while its last POST failed."""
        if not self.deliveries:
            return off("webhooks", "no subscribers (webhooks.urls, yihu webhook add)")
        return [d.health() for d in self.deliveries.values()]

    def stop(self):
        self._stopped = True
        if self._refresh.running:
            self._refresh.stop()
        return self._stop_deliveries()

    def _stop_deliveries(self):
        return defer.DeferredList([d.stop() for d in self.deliveries.values() if not d.stopped])
