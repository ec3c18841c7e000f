"""The event log, the event stream and webhooks, as dispatch software sees them (both backends)."""
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import pytest
import pytest_twisted
from sqlalchemy import func, select
from twisted.internet import defer, reactor
from twisted.internet.defer import fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.web.server import Site

from adapters import webhook_store
from adapters.events import EventsSection, EventTail, RetentionSweep
from adapters.stream import EventStreamResource
from adapters.webhooks import WebhookSection, Webhooks, target_name
from tests.secrets import WEBHOOK_SECRET
from gateway.eventlog import Horizon, read_final, record_event
from gateway.storage.schema import event_log, webhook_dead_letters, webhook_subscribers

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=timezone.utc)
SECRET = WEBHOOK_SECRET


@defer.inlineCallbacks
def settle(check, what, timeout=10.0):
    """Wait for database threads to finish what the Clock set off (real time: the DB is real)."""
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield deferLater(reactor, 0.01, lambda: None)


def record_tx(conn, n, kind="order.feedback", at=T0):
    return [record_event(conn, kind, {"n": i}, at) for i in range(n)]


def log_ids(conn):
    return conn.execute(select(event_log.c.id).order_by(event_log.c.id)).scalars().all()


def verify(secret: str, header: str, body: bytes, now: float, tolerance=300) -> bool:
    """A receiver's check, written from the README, not from the gateway's code."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    t = int(fields["t"])
    expected = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return abs(now - t) <= tolerance and hmac.compare_digest(expected, fields["v1"])


# --- the log -----------------------------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_events_commit_with_the_change_and_ids_never_repeat_after_a_sweep(database):
    told = []
    database.add_event_listener(told.append)

    def rolled_back(conn):
        record_event(conn, "order.created", {"order_code": "0427"})
        raise RuntimeError("the state change failed")
    with pytest.raises(RuntimeError):
        yield database.run(rolled_back)
    assert (yield database.run(log_ids)) == [] and told == []      # no change, no event

    first = yield database.run(record_tx, 3)
    assert first == sorted(first) and len(set(first)) == 3
    assert [[e.id for e in batch] for batch in told] == [first]   # told after the commit, with ids

    clock = Clock()
    clock.advance((T0 + timedelta(days=31)).timestamp())
    yield database.run(record_tx, 1, "hotline.arrived", T0 + timedelta(days=2))
    sweep = RetentionSweep(clock, database, EventsSection(retention_days=30, sweep_interval_s=3600))
    sweep.start()                                                  # sweeps at once, then hourly
    yield settle(lambda: len(told) == 2, "")
    kept = yield database.run(log_ids)
    while len(kept) != 1:
        kept = yield database.run(log_ids)
    assert kept[0] > first[-1]                                     # 31 days old: gone; 29 days: kept
    clock.advance(2 * 86400)                                       # now 31 days after the kept one
    while (yield database.run(log_ids)):
        clock.advance(3600)
    sweep.stop()
    yield database.run(lambda c: c.execute(event_log.delete()))
    again = yield database.run(record_tx, 1)
    assert again[0] > kept[0]                                      # never reused, even with the log empty


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_an_id_committed_after_a_higher_one_is_still_delivered_in_order(database):
    """PostgreSQL: transaction A takes an id, B takes the next and commits first.  The tail waits
    for A instead of moving past A's id; when A commits, both go out, in id order."""
    tail = EventTail(reactor, database, EventsSection(poll_s=0.05))
    yield tail.start()
    got = []
    tail.subscribe(got.append)
    engine = database.engine
    a = engine.connect()
    b = engine.connect()
    try:
        ta = a.begin()
        id_a = record_event(a, "order.feedback", {"team": "PUB-01"})
        tb = b.begin()
        id_b = record_event(b, "order.feedback", {"team": "PUB-02"})
        assert id_b > id_a
        tb.commit()                                                # B first: visible, id above A's
        yield deferLater(reactor, 0.3, lambda: None)               # the tail has looked, several times
        batch = yield database.run(read_final, 0, Horizon(), 0.0)
        assert batch.events == [] and batch.held                   # B is visible but not final
        assert got == [] and tail.head < id_a
        ta.commit()
        yield settle(lambda: len(got) == 2, "both events")
        assert [e.id for e in got] == [id_a, id_b]
    finally:
        a.close()
        b.close()
        tail.stop()


# --- the event stream ---------------------------------------------------------------------------

class SseClient(Protocol):
    def __init__(self, last_event_id=None, query=""):
        self.request = f"GET /{query} HTTP/1.1\r\nHost: x\r\n".encode()
        if last_event_id is not None:
            self.request += f"Last-Event-ID: {last_event_id}\r\n".encode()
        self.request += b"\r\n"
        self.data = b""

    def connectionMade(self):
        self.transport.write(self.request)

    def dataReceived(self, data):
        self.data += data

    def ids(self):
        return [int(line[4:]) for line in self.data.decode().split("\n") if line.startswith("id: ")]


@pytest_twisted.inlineCallbacks
def test_event_stream_replays_the_log_then_goes_live_with_no_gap_and_no_duplicate(database):
    # A backlog bigger than the tail's memory and than one read, and commits during the replay.
    yield database.run(record_tx, 1200)
    tail = EventTail(reactor, database, EventsSection(keep_in_memory=100))
    yield tail.start()
    port = reactor.listenTCP(0, Site(EventStreamResource(tail, reactor)), interface="127.0.0.1")
    client = SseClient(last_event_id=7)
    try:
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        for _ in range(60):                          # committing while the client replays
            yield database.run(record_tx, 5)
        all_ids = yield database.run(log_ids)
        yield settle(lambda: client.ids()[-1:] == all_ids[-1:], "the stream to reach the last event")
        assert client.ids() == [i for i in all_ids if i > 7]
        assert b"HTTP/1.1 200" in client.data and b"text/event-stream" in client.data
        # A new client without Last-Event-ID starts live; ?kind filters.
        live = SseClient(query="?kind=hotline")
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), live)
        yield deferLater(reactor, 0.1, lambda: None)
        yield database.run(record_tx, 1)
        ids = yield database.run(record_tx, 1, "hotline.ended")
        yield settle(lambda: live.ids() == ids, "the live hotline event")
        client.transport.loseConnection()
        live.transport.loseConnection()
        yield settle(lambda: tail._subscribers == [], "closed streams to be forgotten")
    finally:
        tail.stop()
        yield port.stopListening()


def test_event_stream_refuses_a_bad_last_event_id():
    from twisted.web.test.requesthelper import DummyRequest
    req = DummyRequest([b""])
    req._disconnected = False            # (a real Request has it)
    req.requestHeaders.addRawHeader(b"last-event-id", b"seven")
    EventStreamResource(None, Clock()).render_GET(req)
    body = json.loads(b"".join(req.written))
    assert req.responseCode == 422 and "Last-Event-ID" in body["error"] and body["field"] == "since"


class PushRequest:
    """Just enough of a request for a streaming producer (DummyRequest loops pull producers)."""

    def __init__(self):
        from twisted.web.test.requesthelper import DummyRequest
        self.r = DummyRequest([b""])
        self.producer = None

    def __getattr__(self, name):
        return getattr(self.r, name)

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None


class StubTail:
    def __init__(self):
        self.head, self.subscribers = 0, []

    def when_ready(self):
        return succeed(0)

    def in_memory(self, cursor):
        return True

    def since(self, cursor):
        return []

    def subscribe(self, fn):
        self.subscribers.append(fn)
        return lambda: self.subscribers.remove(fn) if fn in self.subscribers else None


def test_a_live_client_that_stops_reading_is_closed_and_resumes_from_the_log():
    from gateway.eventlog import Event
    tail, req = StubTail(), PushRequest()
    EventStreamResource(tail, Clock(), max_behind=3).render_GET(req)
    tell = tail.subscribers[0]
    tell(Event(1, "order.feedback", "2027-01-15T08:00:00.000+00:00", {}))
    req.producer.pauseProducing()                    # its socket is full
    for i in (2, 3, 4):
        tell(Event(i, "order.feedback", "2027-01-15T08:00:00.000+00:00", {}))
    req.producer.resumeProducing()                   # it read
    req.producer.pauseProducing()
    for i in (5, 6, 7, 8, 9):
        tell(Event(i, "order.feedback", "2027-01-15T08:00:00.000+00:00", {}))
    written = b"".join(req.r.written).decode()
    assert [int(x[4:]) for x in written.split("\n") if x.startswith("id: ")] == [1, 2, 3, 4, 5, 6, 7]
    assert req.r.finished and tail.subscribers == []  # closed at 4 behind; Last-Event-ID 7 resumes


# --- webhooks -----------------------------------------------------------------------------------

class FakePost:
    def __init__(self):
        self.calls = []
        self.answers = []

    def __call__(self, url, body, headers):
        self.calls.append((url, json.loads(body), headers, body))
        return self.answers.pop(0) if self.answers else succeed(200)

    def ids(self):
        return [c[1]["seq"] for c in self.calls]


def subscribers(conn):
    return {r.url: r for r in conn.execute(select(webhook_subscribers))}


@defer.inlineCallbacks
def hooks_on(database, clock, cfg, post):
    tail = EventTail(clock, database)
    yield tail.start()
    hooks = Webhooks(clock, database, tail, cfg, post=post)
    yield hooks.start()
    return tail, hooks


URL = "https://user:pw@dispatch.example/hook?token=x"


@pytest_twisted.inlineCallbacks
def test_webhook_delivers_in_order_retries_signs_and_resumes_from_its_cursor(database):
    clock = Clock()
    clock.advance(T0.timestamp())
    post = FakePost()
    post.answers = [fail(ConnectionRefusedError()), succeed(503)]
    cfg = WebhookSection(urls=[URL], secret=SECRET, retry_initial_s=1, retry_max_s=4)
    tail, hooks = yield hooks_on(database, clock, cfg, post)
    ids = yield database.run(record_tx, 2)
    yield settle(lambda: len(post.calls) == 1, "the first POST")
    clock.advance(1)
    yield settle(lambda: len(post.calls) == 2, "the retry after 1 s")
    clock.advance(1.9)
    yield deferLater(reactor, 0.05, lambda: None)
    assert len(post.calls) == 2                      # backoff doubled to 2 s; nothing jumped the queue
    clock.advance(0.1)
    yield settle(lambda: len(post.calls) == 4, "delivery, then the next event at once")
    assert post.ids() == [ids[0], ids[0], ids[0], ids[1]]
    for _, payload, headers, body in post.calls:
        assert verify(SECRET, headers["X-Yihu-Signature"], body, clock.seconds())
        assert headers["X-Yihu-Event-Id"] == str(payload["seq"])
    assert not verify(SECRET, post.calls[0][2]["X-Yihu-Signature"], post.calls[0][3], clock.seconds() + 301)
    assert target_name(URL) == "https://dispatch.example/hook"         # no credentials in labels
    url, _, headers, _ = post.calls[0]
    assert url == "https://dispatch.example/hook?token=x"              # credentials as Basic auth instead
    assert headers["Authorization"] == "Basic " + __import__("base64").b64encode(b"user:pw").decode()
    delivery = list(hooks.deliveries.values())[0]
    yield settle(lambda: delivery.acked == ids[0], "the cursor saved after the first")
    clock.advance(0.25)                              # cursor writes: at most every 0.25 s
    yield settle(lambda: delivery.acked == ids[1], "the cursor saved after the second")
    yield hooks.stop()
    tail.stop()

    # A restart: the subscriber goes on after its cursor, with what was committed meanwhile.
    more = yield database.run(record_tx, 3)
    post2 = FakePost()
    tail, hooks = yield hooks_on(database, clock, cfg, post2)
    yield settle(lambda: len(post2.calls) == 3, "the events committed while stopped")
    assert post2.ids() == more
    yield hooks.stop()
    tail.stop()


@pytest_twisted.inlineCallbacks
def test_a_receiver_down_for_an_hour_gets_everything_in_order_when_back(database):
    clock = Clock()
    clock.advance(T0.timestamp())
    post = FakePost()
    post.answers = [fail(ConnectionRefusedError())] * 1000
    tail, hooks = yield hooks_on(database, clock, WebhookSection(urls=["http://127.0.0.1:9/h"], secret=SECRET),
                                 post)
    ids = []
    for minute in range(60):                         # an event every 10 minutes, retries up to 60 s apart
        if minute % 10 == 0:
            ids += yield database.run(record_tx, 1, "hotline.arrived", datetime.fromtimestamp(clock.seconds(),
                                                                                             timezone.utc))
            yield settle(lambda: tail.head == ids[-1], "the tail")
        tried = len(post.calls)
        clock.advance(60)
        # the retry reads the log in a database thread: let it POST before the clock moves on
        yield settle(lambda: len(post.calls) > tried, f"the retry in minute {minute}")
    failures = len(post.calls)
    assert 60 <= failures <= 70 and set(post.ids()) == {ids[0]}        # the first, over and over
    post.answers = []                                # back
    clock.advance(60)
    yield settle(lambda: post.ids()[failures:] == ids, "everything, in order")
    for _, payload, headers, body in post.calls[failures:]:
        assert verify(SECRET, headers["X-Yihu-Signature"], body, clock.seconds())
    dead = yield database.run(lambda c: c.execute(select(func.count()).select_from(webhook_dead_letters)).scalar())
    assert dead == 0
    yield hooks.stop()
    tail.stop()


@pytest_twisted.inlineCallbacks
def test_webhook_gives_events_up_as_dead_letters_after_the_configured_age(database):
    clock = Clock()
    clock.advance(T0.timestamp())
    post = FakePost()
    post.answers = [succeed(500)] * 20
    cfg = WebhookSection(urls=["http://127.0.0.1:9/h"], retry_initial_s=60, retry_max_s=60, dead_letter_after_s=600)
    tail, hooks = yield hooks_on(database, clock, cfg, post)
    old = yield database.run(record_tx, 3, "order.escalated", T0)
    yield settle(lambda: len(post.calls) == 1, "the first POST")
    from prometheus_client import REGISTRY
    backlog = {"target": "http://127.0.0.1:9/h"}
    yield settle(lambda: REGISTRY.get_sample_value("yihu_webhook_backlog", backlog) == 3, "the backlog metric")
    for n in range(2, 13):                           # retried every minute: 11 minutes of failures
        clock.advance(60)
        yield settle(lambda: len(post.calls) == n, f"retry {n}")

    def dead_letters(conn):
        return conn.execute(select(webhook_dead_letters.c.event_id).order_by(webhook_dead_letters.c.event_id)
                            ).scalars().all()
    dead = []
    while not dead:                                  # failed once more after 660 s: given up
        dead = yield database.run(dead_letters)
    assert dead == old
    assert post.ids() == [old[0]] * 12               # in order: the first was never overtaken
    # The gauge follows on the reactor once delivery reads on past them (the dead letters are
    # visible to this test as soon as they commit, before the webhook's next read).
    yield settle(lambda: REGISTRY.get_sample_value("yihu_webhook_backlog", backlog) == 0, "the backlog emptied")
    post.answers = []
    fresh = yield database.run(record_tx, 1, "order.feedback", T0 + timedelta(seconds=660))
    yield settle(lambda: post.ids()[-1:] == fresh, "the next event, delivered")
    assert post.ids() == [old[0]] * 12 + fresh       # the others, as old, given up without a POST
    assert REGISTRY.get_sample_value("yihu_webhook_dead_letters_total", {"target": "http://127.0.0.1:9/h"}) >= 3
    yield hooks.stop()
    tail.stop()


@pytest_twisted.inlineCallbacks
def test_subscribers_follow_the_configuration_file(database):
    clock = Clock()
    clock.advance(T0.timestamp())
    yield database.run(record_tx, 2)
    tail, hooks = yield hooks_on(database, clock, WebhookSection(urls=["http://a.example/h", "http://b.example/h"]),
                                 FakePost())
    yield database.run(webhook_store.add_tx, "http://cli.example/h", None, T0)
    yield hooks.stop()
    tail.stop()
    subs = yield database.run(subscribers)
    assert {u: (s.source, s.cursor) for u, s in subs.items()} == {
        "http://a.example/h": ("config", 2), "http://b.example/h": ("config", 2), "http://cli.example/h": ("cli", 2)}
    tail, hooks = yield hooks_on(database, clock, WebhookSection(urls=["http://b.example/h"]), FakePost())
    assert sorted(hooks.deliveries[s].url for s in hooks.deliveries) == ["http://b.example/h", "http://cli.example/h"]
    yield hooks.stop()
    tail.stop()


def test_webhook_command_adds_lists_and_removes(migrated_url, tmp_path, capsys):
    from gateway.cli import main
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    db = ["--database-url", migrated_url]
    assert main(["webhook", "add", "https://u:pw@dispatch.example/h", "--secret-file", str(secret), *db]) == 0
    assert main(["webhook", "add", "https://u:pw@dispatch.example/h", *db]) == 2
    assert main(["webhook", "add", "ftp://dispatch.example/h", *db]) == 2
    assert main(["webhook", "add", "https://other.example/h", "--from-event", "99", *db]) == 2
    assert main(["webhook", "list", *db]) == 0
    assert main(["webhook", "remove", "https://u:pw@dispatch.example/h", *db]) == 0
    assert main(["webhook", "remove", "https://u:pw@dispatch.example/h", *db]) == 2
    out = capsys.readouterr()
    text_ = out.out + out.err
    assert "https://dispatch.example/h  [cli, own secret]  after #0, 0 behind, 0 dead letters" in text_
    assert "event #99 is not in the log yet" in text_
    assert "already a subscriber" in text_ and "not an http(s) URL" in text_ and "no webhook subscriber" in text_
    assert SECRET not in text_ and "pw@" not in text_


def test_bad_webhook_settings_are_refused():
    with pytest.raises(ValueError, match="ftp://x"):
        WebhookSection(urls=["ftp://x"])
    with pytest.raises(ValueError, match="dead_letter_after_s"):
        WebhookSection(dead_letter_after_s=1)
