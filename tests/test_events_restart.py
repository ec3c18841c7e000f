"""The event log across a kill -9 of the real gateway process (embedded default, both backends).

A dispatcher's event stream and a webhook receiver follow the gateway.  The receiver goes down;
orders are sent (their events, and the teams' keypad answers, are committed); the gateway is
killed with SIGKILL; an order is sent from the CLI while it is down; the gateway is started
again.  The event stream resumes from its Last-Event-ID with no gap and no duplicate, and the
receiver, back up, gets every event of the log, in id order, each signed per the README's
scheme, checked here with this test's own HMAC code.
"""
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest_twisted
import treq
from sqlalchemy import select
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import Site

from gateway.storage import Database
from gateway.storage.schema import event_log
from tests.test_embedded_drill import free_port

ROOT = Path(__file__).resolve().parent.parent
ROSTER = ROOT / "deploy" / "examples" / "roster.yaml"
SECRET = "dispatch-webhook-secret-0427"
TOLERANCE = 300          # the README's tolerance


class Receiver(Resource):
    """Dispatch software's webhook endpoint: keeps every request, can go down and come back."""
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.got: list[tuple[dict, bytes, float]] = []
        self.port = None
        self.number = 0

    def render_POST(self, request):
        headers = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        self.got.append((headers, request.content.read(), time.time()))
        return b"ok"

    def up(self):
        site = Site(self)
        self.port = reactor.listenTCP(self.number, site, interface="127.0.0.1")
        self.number = self.port.getHost().port

    @defer.inlineCallbacks
    def down(self):
        yield self.port.stopListening()
        for conn in list(reactor.getReaders()):        # drop the gateway's kept-alive connections too
            if getattr(conn, "server", None) is not None and conn.server is self.port:
                conn.abortConnection()

    def ids(self):
        return [json.loads(body)["seq"] for _, body, _ in self.got]


def verify(headers: dict, body: bytes, received_at: float) -> bool:
    fields = dict(part.split("=", 1) for part in headers["x-yihu-signature"].split(","))
    t = int(fields["t"])
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, fields["v1"]) and abs(received_at - t) <= TOLERANCE


class Stream(Protocol):
    def __init__(self, last_id=None):
        self.last_id, self.data = last_id, b""

    def connectionMade(self):
        extra = f"Last-Event-ID: {self.last_id}\r\n" if self.last_id is not None else ""
        self.transport.write(f"GET /events HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())

    def dataReceived(self, data):
        self.data += data

    def ids(self):
        return [int(line[4:]) for line in self.data.decode().split("\n") if line.startswith("id: ")]


@defer.inlineCallbacks
def eventually(check, what, timeout=60.0):
    deadline = reactor.seconds() + timeout
    while True:
        result = yield defer.maybeDeferred(check)
        if result:
            return result
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield deferLater(reactor, 0.1, lambda: None)


class GatewayProcess:
    def __init__(self, tmp_path, url, receiver_url):
        self.tmp, self.http = tmp_path, free_port()
        self.config = tmp_path / "yihu.toml"
        self.config.write_text(
            f'[gateway]\nmode = "drill"\ndata_dir = "data"\ndatabase_url = "{url}"\n[http]\nport = {self.http}\n'
            f'[ivr]\nport = {free_port()}\nspeech = false\n[embedded]\nami_port = {free_port()}\nmodems = 2\n'
            f'segment_seconds = 0.05\n[webhooks]\nurls = ["{receiver_url}"]\nsecret = "{SECRET}"\n'
            f'retry_initial_s = 0.2\nretry_max_s = 0.5\n')
        self.proc = None
        self.runs = 0

    def start(self):
        self.runs += 1
        with open(self.tmp / f"run{self.runs}.log", "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config),
                                          "--roster", str(ROSTER)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def cli(self, *args):
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args, "--config", str(self.config)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    @defer.inlineCallbacks
    def answering(self):
        @defer.inlineCallbacks
        def up():
            assert self.proc.poll() is None, (self.tmp / f"run{self.runs}.log").read_text()
            try:
                resp = yield treq.get(f"http://127.0.0.1:{self.http}/health")
                body = json.loads((yield resp.content()))
                return body["checks"]["ami"]["ok"]
            except Exception:  # noqa: BLE001 - not listening yet
                return False
        try:
            yield eventually(up, "the gateway to answer /health with AMI logged in")
        except AssertionError as e:          # say why: the gateway's own log
            log = (self.tmp / f"run{self.runs}.log").read_text()
            raise AssertionError(f"{e}; its log ends:\n{log[-3000:]}") from None

    def order(self, ref, teams):
        return treq.post(f"http://127.0.0.1:{self.http}/api/v1/orders", headers={"Idempotency-Key": ref},
                         json={"incident_ref": ref, "kind": "rescue", "rule": "same_township", "voice": True,
                               "target": f"teams:{teams}", "text": "白塔镇山体滑坡，请立即赶赴现场。"})

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest_twisted.inlineCallbacks
def test_stream_and_webhooks_lose_nothing_across_a_kill_9(migrated_url, tmp_path):
    receiver = Receiver()
    receiver.up()
    gw = GatewayProcess(tmp_path, migrated_url, f"http://127.0.0.1:{receiver.number}/yihu/events")
    db = Database(reactor, migrated_url)
    db.start()
    streams = []

    def log_ids(conn):
        return conn.execute(select(event_log.c.id, event_log.c.kind).order_by(event_log.c.id)).all()
    try:
        gw.start()
        yield gw.answering()
        first = Stream()
        streams.append((yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", gw.http), first)))
        yield deferLater(reactor, 0.3, lambda: None)
        assert (yield gw.order("KILL-1", "PUB-07,PRO-05")).code == 201
        yield eventually(lambda: len(receiver.got) >= 2, "the receiver to get the first events")

        yield receiver.down()
        for ref, teams in (("KILL-2", "PUB-01,PUB-02"), ("KILL-3", "PRO-01")):
            assert (yield gw.order(ref, teams)).code == 201
        # Keypad answers come a second or two later: kill while they are being committed.
        yield eventually(lambda: len(first.ids()) >= 5, "events on the stream")
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait()
        seen_before = first.ids()
        done = gw.cli("order", "send", "--incident", "KILL-4", "--kind", "rescue", "--rule", "same_township",
                      "--target", "teams:PUB-03", "--text", "堤坝险情，请集合。")
        assert done.returncode == 0, done.stderr

        gw.start()
        yield gw.answering()
        resumed = Stream(last_id=seen_before[-1])
        streams.append((yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", gw.http), resumed)))
        receiver.up()                                   # same port: back after more than the kill
        back_at = time.time()
        assert (yield gw.order("KILL-5", "EXPERT")).code == 201
        rows = None
        while True:          # until the log stops growing (the keypad answers to KILL-5 come later)
            yield deferLater(reactor, 2.0, lambda: None)
            latest = yield db.run(log_ids)
            if latest == rows:
                break
            rows = latest
            ids = [i for i, _ in rows]
            yield eventually(lambda: set(receiver.ids()) >= set(ids) and resumed.ids()[-1:] == ids[-1:],
                             "the receiver and the stream to have every event")
    finally:
        for s in streams:
            s.transport.loseConnection()
        gw.stop()
        if receiver.port is not None:
            yield receiver.port.stopListening()
        db.stop()

    # The stream: what the first connection saw, then the resumed one, is the log, once each.
    start = ids.index(seen_before[0])
    assert seen_before + resumed.ids() == ids[start:]
    # The webhook: every event of the log, first deliveries in id order; a repeat only for
    # events whose acknowledgement the kill -9 caught before it was written (at least once).
    got = receiver.ids()
    assert set(got) == set(ids)
    firsts = list(dict.fromkeys(got))
    assert firsts == sorted(firsts) == ids
    assert len(got) - len(firsts) <= 10
    kinds = {i: k for i, k in rows}
    for headers, body, received_at in receiver.got:
        assert verify(headers, body, received_at), headers
        event = json.loads(body)
        assert headers["x-yihu-event"] == event["kind"] == kinds[event["seq"]]
    assert {"order.created", "order.feedback"} <= set(kinds.values())
    # What was committed while the receiver was down (before and across the kill) came after it was back.
    late = {json.loads(b)["payload"].get("incident_ref"): at for _, b, at in receiver.got
            if json.loads(b)["kind"] == "order.created"}
    assert {"KILL-2", "KILL-3", "KILL-4"} <= set(late) and all(late[r] >= back_at for r in ("KILL-2", "KILL-3", "KILL-4"))
    logs = "".join(p.read_text() for p in tmp_path.glob("run*.log"))
    assert "webhook http://127.0.0.1" in logs and SECRET not in logs        # secrets never logged
    print(f"{len(ids)} events in the log, {len(got)} POSTs ({len(got) - len(firsts)} repeated), "
          f"stream: {len(seen_before)} before the kill, {len(resumed.ids())} after")
