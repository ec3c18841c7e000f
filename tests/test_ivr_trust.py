"""FastAGI trusts only Asterisk: refused peers, one-time order-call tokens, the feedback line's PIN.

Over loopback TCP against the real FastAGI server and flows, on SQLite and PostgreSQL.  Tokens are
checked here with the test's own HMAC, never with the code under test.  127.0.0.2 is a second
loopback address (all of 127/8 routes locally), so "a peer not allowed" needs no second host.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import stat
from datetime import datetime, timezone

import pytest
import pytest_twisted
from sqlalchemy import insert, select, update
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import Clock, deferLater
from zope.interface import implementer

from gateway import metrics
from gateway.ami.emulator.server import originate_variables
from gateway.directory.pins import hash_pin, pin_matches
from gateway.interfaces import FeedbackOutcome, IKeypadSink
from gateway.storage.schema import audit_log, call_tokens_used, inbound_raw, members
from ivr.emulator import Press, ScriptedCaller, Silence, agi_environment, place_call
from ivr.emulator.environment import environment_bytes
from ivr.journal import KeypadJournal
from ivr.member_pins import MemberPins
from ivr.peers import PeerGate
from ivr.refusals import RefusalAudit
from ivr.service import make_fastagi_factory
from ivr.token_gate import CallTokenGate
from ivr.tokens import CallTokens, check_call_token, load_or_create_secret, mint_call_token
from tests._orders_rig import Rig, local, phone, seed_directory_tx
from tests.secrets import CALL_TOKEN_KEY

KEY = CALL_TOKEN_KEY
COMMANDER = "+8613805761234"


def their_mac(key: bytes, delivery, phone_: str, expires: int, nonce: str) -> str:
    """The token's MAC as the documentation states it (dialplans/README.md), computed here."""
    return hmac.new(key, f"yihu-call-v1|{delivery}|{phone_}|{expires}|{nonce}".encode(), hashlib.sha256).hexdigest()


def refused_count(reason: str) -> float:
    return metrics.AUTH_REFUSED.labels(reason)._value.get()


def audits(conn, prefix="auth.refused."):
    return [dict(r._mapping) for r in conn.execute(
        select(audit_log).where(audit_log.c.action.like(prefix + "%")).order_by(audit_log.c.id))]


def keypad_rows(conn):
    return [dict(r._mapping) for r in conn.execute(select(inbound_raw).order_by(inbound_raw.c.id))]


@pytest.fixture
def logged():
    """Every log line the gateway writes during the test, formatted as an operator reads it."""
    from twisted.logger import formatEvent, globalLogPublisher
    lines = []

    def observer(event):
        lines.append(formatEvent(event))
    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


async def eventually(check, what, timeout=10.0):
    """Poll a real-transport outcome with a deadline (end to end over TCP only)."""
    deadline = reactor.seconds() + timeout
    while True:
        got = await check()
        if got:
            return got
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.05, lambda: None)


# --- tokens, pure ------------------------------------------------------------------------------

def test_token_is_the_documented_hmac_and_each_wrong_part_is_named():
    token = CallTokens(KEY, grace_s=60).variables("12", COMMANDER, now=1000.0, ring_s=30)["YIHU_TOKEN"]
    expires, nonce, mac = token.split(".")
    assert int(expires) == 1091 and len(nonce) == 16
    assert mac == their_mac(KEY, "12", COMMANDER, 1091, nonce)
    assert "," not in token and "=" not in token          # safe in an Originate Variable: header
    assert check_call_token(KEY, token, "12", COMMANDER, 1090).ok
    assert check_call_token(KEY, token, "12", COMMANDER, 1092).reason == "expired"
    assert check_call_token(KEY, token, "13", COMMANDER, 1000).reason == "forged"       # another delivery
    assert check_call_token(KEY, token, "12", "+8613900000000", 1000).reason == "forged"
    assert check_call_token(b"x" * 32, token, "12", COMMANDER, 1000).reason == "forged"
    assert check_call_token(KEY, None, "12", COMMANDER, 1000).reason == "missing"
    assert check_call_token(KEY, "0427", "12", COMMANDER, 1000).reason == "malformed"
    assert KEY.decode() not in repr(CallTokens(KEY))


def test_token_key_is_made_once_kept_private_and_a_configured_one_wins(tmp_path):
    path = tmp_path / "data" / "ivr-token.key"
    first = load_or_create_secret("", path)
    assert len(first) == 64 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret("", path) == first                  # a restart: the same key
    assert load_or_create_secret("configured-secret-1234", path) == b"configured-secret-1234"
    path.write_text("short\n")
    with pytest.raises(ValueError, match="too short"):
        load_or_create_secret("", path)


def test_allowed_peers_are_addresses_or_networks_on_both_families():
    gate = PeerGate(["127.0.0.1/32", "10.20.0.0/24", "fd00::5"], refusals=None)
    assert gate.allows("127.0.0.1") and gate.allows("10.20.0.77") and gate.allows("fd00::5")
    assert gate.allows("::ffff:10.20.0.9")                  # IPv4 peer on a dual-stack listener
    assert not gate.allows("127.0.0.2") and not gate.allows("10.20.1.1") and not gate.allows("::1")
    assert not gate.allows("not-an-address")
    with pytest.raises(ValueError, match="10.0.0.300"):
        PeerGate(["10.0.0.300"], refusals=None)


def test_emulated_pbx_reads_originate_variables_as_asterisk_does():
    # Each Variable: header, split on commas, as astman_get_variables_order does.
    assert originate_variables(["ORDER_CODE=0427,YIHU_PHONE=+4477", "YIHU_TOKEN=1.ab.cd", ""]) == [
        "ORDER_CODE=0427", "YIHU_PHONE=+4477", "YIHU_TOKEN=1.ab.cd"]


# --- refused peers -----------------------------------------------------------------------------

class _Probe(Protocol):
    """A peer that sends an AGI environment and notes what the server sends back."""

    def __init__(self):
        self.received = b""
        self.lost = Deferred()

    def connectionMade(self):
        self.transport.write(environment_bytes(agi_environment("order?order=0427")))

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(self.received)


def connect_from(source: str, port: int) -> Deferred:
    probe = _Probe()
    factory = ClientFactory()
    factory.protocol = lambda: probe
    reactor.connectTCP("127.0.0.1", port, factory, timeout=5, bindAddress=(source, 0))
    return probe.lost.addTimeout(5, reactor)


@implementer(IKeypadSink)
class RecordingSink:
    def __init__(self):
        self.answers = []

    def keypad_answer(self, answer):
        self.answers.append(answer)
        return succeed(FeedbackOutcome(True, "已记录", answer.order_code, "received"))

    def open_orders_for(self, caller):
        return succeed(["0427"])


class Gateway:
    """The FastAGI side as the gateway wires it, on a loopback port, allowed peer 127.0.0.1 only."""

    def __init__(self, database, *, window=60.0, clock=None):
        self.database = database
        self.sink = RecordingSink()
        self.refusals = RefusalAudit(clock or reactor, database, window=window)
        self.tokens = CallTokens(KEY, grace_s=60)
        self.factory = make_fastagi_factory(
            reactor, sink=self.sink, journal=KeypadJournal(reactor, database),
            tokens=CallTokenGate(reactor, database, self.tokens, self.refusals),
            pins=MemberPins(database, self.refusals),
            peers=PeerGate(["127.0.0.1/32"], self.refusals))
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.number = self.port.getHost().port

    def order_call(self, variables, moves=("1",)):
        return place_call(reactor, "127.0.0.1", self.number, "order?order=0427",
                          caller=ScriptedCaller([Press(m) for m in moves]), variables=variables,
                          env={"agi_uniqueid": "yihu-order-0427-12-1"})

    def stop(self):
        return self.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_peer_not_allowed_is_cut_off_before_any_command_and_audited(database, logged):
    gw = Gateway(database)
    before = refused_count("peer_not_allowed")
    try:
        received = await connect_from("127.0.0.2", gw.number)
        assert received == b""                          # not even ANSWER: nothing was sent
        rows = await eventually(lambda: database.run(audits), "the refusal's audit row")
        [row] = rows
        assert row["action"] == "auth.refused.peer_not_allowed" and row["actor"] == "peer:127.0.0.2"
        assert row["detail"]["count"] == 1 and row["detail"]["allowed"] == ["127.0.0.1/32"]
        assert refused_count("peer_not_allowed") == before + 1
        assert gw.factory.active == set() and await database.run(keypad_rows) == []
        assert any("refused connection from 127.0.0.2" in line for line in logged), logged
        # The allowed address on the same port gets the session (and its commands).
        record = await gw.order_call({"ORDER_CODE": "0427"}, moves=())
        assert record.commands[0] == "ANSWER"
    finally:
        await gw.stop()


@pytest_twisted.ensureDeferred
async def test_a_burst_of_refusals_from_one_peer_is_one_audit_row_per_window(database):
    clock = Clock()
    gw = Gateway(database, window=60.0, clock=clock)
    before = refused_count("peer_not_allowed")
    try:
        for _ in range(5):
            assert await connect_from("127.0.0.2", gw.number) == b""
        assert refused_count("peer_not_allowed") == before + 5         # every one counted
        await eventually(lambda: database.run(audits), "the first refusal's row")
        assert len(await database.run(audits)) == 1                    # the rest summed, not written
        clock.advance(60)                                              # the window closes
        rows = await eventually(lambda: database.run(audits).addCallback(lambda r: r if len(r) == 2 else None),
                                "the window's summary row")
        assert [r["detail"]["count"] for r in rows] == [1, 4] and rows[1]["detail"]["rate_limited"] is True
    finally:
        await gw.stop()


# --- order-call tokens ---------------------------------------------------------------------------

def order_vars(token=None, delivery="12", phone_=COMMANDER):
    v = {"ORDER_CODE": "0427", "YIHU_PHONE": phone_, "YIHU_DELIVERY": delivery}
    if token is not None:
        v["YIHU_TOKEN"] = token
    return v


async def refused_order_call(gw, variables, reason):
    before = refused_count(f"call_token_{reason}")
    n_audits = len(await gw.database.run(audits))
    record = await gw.order_call(variables)
    assert "yihu/not-recorded" in record.played and "yihu/order-intro" not in record.played
    assert not any(c.startswith("GET DATA") for c in record.commands)      # no menu, no key taken
    assert refused_count(f"call_token_{reason}") == before + 1
    rows = await gw.database.run(audits)
    assert len(rows) == n_audits + 1
    row = rows[-1]
    assert row["action"] == f"auth.refused.call_token_{reason}" and row["subject"] == "order 0427 delivery 12"
    assert row["detail"]["call_id"] == "yihu-order-0427-12-1" and row["detail"]["peer"] == "127.0.0.1"
    return row


@pytest_twisted.ensureDeferred
async def test_forged_expired_missing_and_replayed_tokens_record_nothing_and_are_audited(database, logged):
    gw = Gateway(database)
    now = int(reactor.seconds())
    try:
        # A forger who knows the format but not the key.
        nonce = "00112233aabbccdd"
        forged = f"{now + 300}.{nonce}.{their_mac(b'guessed-key-guessed-key', '12', COMMANDER, now + 300, nonce)}"
        await refused_order_call(gw, order_vars(forged), "forged")
        # A real token, lifted from one delivery and presented for another.
        other = mint_call_token(KEY, "99", COMMANDER, now + 300)
        await refused_order_call(gw, order_vars(other), "forged")
        expired = mint_call_token(KEY, "12", COMMANDER, now - 1)
        await refused_order_call(gw, order_vars(expired), "expired")
        await refused_order_call(gw, order_vars(None), "missing")
        assert gw.sink.answers == [] and await database.run(keypad_rows) == []

        # The gateway's own token works once ...
        good = gw.tokens.variables("12", COMMANDER, reactor.seconds(), 30)["YIHU_TOKEN"]
        record = await gw.order_call(order_vars(good))
        assert [a.digit for a in gw.sink.answers] == ["1"] and "yihu/recorded" in record.played
        [used] = await database.run(lambda c: c.execute(select(call_tokens_used)).all())
        assert used.delivery_id == 12 and used.token_sha256 == hashlib.sha256(good.encode()).hexdigest()
        # ... and a replay of it is refused, also by a gateway started again (a new gate, same database).
        await refused_order_call(gw, order_vars(good), "used")
        gw.factory.flows["order"].tokens = CallTokenGate(reactor, database, gw.tokens, gw.refusals)
        row = await refused_order_call(gw, order_vars(good), "used")
        assert row["detail"]["phone"] == COMMANDER
        assert len(gw.sink.answers) == 1
        [keyed] = [r for r in await database.run(keypad_rows) if r["state"] == "new"]
        assert keyed["meta"]["identified_by"] == "order_call_token"
        secret_seen = [r for r in await database.run(audits) if KEY.decode() in str(r) or good in str(r)]
        assert secret_seen == []
        # Each refusal is logged naming the call; neither the key nor a token is ever printed.
        refusals = [line for line in logged if "call token" in line and "yihu-order-0427-12-1" in line]
        assert [line.split("call token ")[1].split(";")[0] for line in refusals] == [
            "forged", "forged", "expired", "missing", "used", "used"]
        assert not any(KEY.decode() in line or good in line or forged in line for line in logged)
    finally:
        await gw.stop()


# --- the feedback line: caller ID recorded, the PIN ------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_feedback_line_asks_a_members_pin_and_records_how_the_caller_was_known(database):
    await database.run(seed_directory_tx, 2)
    commander = phone(1, "commander")           # has a PIN
    deputy = phone(2, "commander")              # has none: caller ID alone

    def set_pin(conn):
        conn.execute(update(members).where(members.c.name == "指挥1").values(pin_hash=hash_pin("4821")))
    await database.run(set_pin)
    rig = Rig(database, local(2026, 3, 2, 10, 0))
    await rig.start()
    refusals = RefusalAudit(reactor, database)
    factory = make_fastagi_factory(reactor, sink=rig.feedback, journal=KeypadJournal(reactor, database),
                                   pins=MemberPins(database, refusals), peers=PeerGate(["127.0.0.1"], refusals))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")

    def call(caller, moves):
        return place_call(reactor, "127.0.0.1", port.getHost().port, "feedback", callerid=caller,
                          caller=ScriptedCaller(moves))
    try:
        order = await rig.send(teams_=("PUB-01", "PUB-02"))
        before = refused_count("feedback_pin")
        # Wrong twice (once keyed wrong, once silent): refused, audited, nothing recorded.
        record = await call(commander, [Press("1111"), Silence(), Press("2")])
        assert record.played.count("yihu/enter-pin") == 2 and "yihu/pin-refused" in record.played
        assert not any("order-menu" in p for p in record.played)
        assert refused_count("feedback_pin") == before + 1
        [row] = await database.run(audits)
        assert (row["action"], row["actor"]) == ("auth.refused.feedback_pin", f"keypad:{commander}")
        assert "1111" not in str(row) and "4821" not in str(row)
        raws = await database.run(keypad_rows)
        assert [r["state"] for r in raws] == ["refused"] and all("1111" not in (r["text"] or "") for r in raws)

        # The right PIN (second try): the answer is recorded, and so is how the caller was known.
        record = await call(commander, [Press("9999"), Press("4821"), Press("2")])
        assert "yihu/wrong-pin" in record.played and "yihu/status-arrived" in record.played
        # A member without a PIN: caller ID alone, and the record says so.
        record = await call(deputy, [Press("1")])
        assert "yihu/enter-pin" not in record.played and "yihu/status-received" in record.played

        def recorded(conn):
            return conn.execute(select(audit_log.c.actor, audit_log.c.detail)
                                .where(audit_log.c.action == "feedback.recorded").order_by(audit_log.c.id)).all()
        rows = await database.run(recorded)
        assert [(r.actor, r.detail["status"]) for r in rows] == [(f"keypad:{commander}", "arrived"),
                                                                (f"keypad:{deputy}", "received")]
        assert rows[0].detail["text"].endswith("identified by caller_id+pin")
        assert rows[1].detail["text"].endswith("identified by caller_id")
        new = [r for r in await database.run(keypad_rows) if r["state"] == "parsed" and r["text"] in ("1", "2")]
        assert sorted(r["meta"]["identified_by"] for r in new) == ["caller_id", "caller_id+pin"]
        assert all(r["text"] not in ("9999", "4821") for r in await database.run(keypad_rows))
        assert order.code
    finally:
        await port.stopListening()
        rig.stop()


def test_pin_hash_is_salted_and_checked_in_constant_form():
    a, b = hash_pin("0427"), hash_pin("0427")
    assert a != b and "0427" not in a
    assert pin_matches("0427", a) and not pin_matches("0428", a) and not pin_matches("0427", "garbage")
    scheme, iterations, salt, digest = a.split("$")
    assert digest == hashlib.pbkdf2_hmac("sha256", b"0427", bytes.fromhex(salt), int(iterations)).hex()
    with pytest.raises(ValueError):
        hash_pin("427")


# --- PINs in the roster ------------------------------------------------------------------------------

ROSTER_YAML = """teams:
  - code: A
    name: Team A
    kind: public
    members:
      - {name: 甲, role: commander, phones: ["13800138000"], pin: "0427"}
      - {name: 乙, role: deputy, phones: ["13800138001"]}
"""
ROSTER_CSV = ("team_code,team_name,kind,name,role,phones,pin\n"
              "A,Team A,public,甲,commander,13800138000,0427\n"
              "A,Team A,public,乙,deputy,13800138001,\n")


@pytest.mark.parametrize("name,body", [("r.yaml", ROSTER_YAML), ("r.csv", ROSTER_CSV)])
def test_roster_pin_is_imported_hashed_and_a_reimport_without_it_clears_it(migrated_url, tmp_path, name, body):
    from gateway.directory.roster import read_roster
    from gateway.directory.store import import_roster
    from gateway.storage import Database
    db = Database(None, migrated_url)
    try:
        path = tmp_path / name
        path.write_text(body, encoding="utf-8")
        db.run_sync(import_roster, read_roster(path), source=name, actor="test")
        stored = dict(db.run_sync(lambda c: c.execute(select(members.c.name, members.c.pin_hash)).all()))
        assert stored["乙"] is None and "0427" not in stored["甲"] and pin_matches("0427", stored["甲"])
        path.write_text(body.replace("0427", ""), encoding="utf-8")
        db.run_sync(import_roster, read_roster(path), source=name, actor="test")
        assert db.run_sync(lambda c: c.execute(select(members.c.pin_hash)).scalars().all()) == [None, None]
    finally:
        db.engine.dispose()


@pytest.mark.parametrize("pin,problem", [('"427"', "pin must be exactly 4 digits"),
                                         ('"12a4"', "pin must be exactly 4 digits"),
                                         ("0427", "pin must be quoted text of 4 digits")])
def test_roster_refuses_a_bad_pin_by_line_without_echoing_it(tmp_path, pin, problem):
    from gateway.directory.roster import RosterError, read_roster
    path = tmp_path / "r.yaml"
    path.write_text(ROSTER_YAML.replace('"0427"', pin), encoding="utf-8")
    with pytest.raises(RosterError) as e:
        read_roster(path)
    [(line, msg)] = e.value.problems
    assert line == 6 and problem in msg and "甲" in msg
    assert pin.strip('"') not in msg and "279" not in msg     # YAML's octal reading of 0427 neither


def test_the_gateway_wires_every_lock(migrated_url, tmp_path):
    from gateway.config import load_config
    from gateway.wiring import build_service
    cfg = load_config(None, {"gateway": {"database_url": migrated_url, "data_dir": str(tmp_path), "embedded": False},
                             "ivr": {"allowed_peers": ["10.20.0.7"], "speech": False}})
    gw = build_service(cfg, reactor)
    factory = gw.fastagi_factory
    assert factory.peers.allows("10.20.0.7") and not factory.peers.allows("127.0.0.1")
    assert factory.flows["order"].tokens is not None and factory.flows["feedback"].pins is not None
    key = tmp_path / "ivr-token.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    # The order caller signs with the same key the order flow checks with.
    caller_tokens = gw.fanout.caller.tokens
    token = caller_tokens.variables("5", COMMANDER, 1000.0, 30)["YIHU_TOKEN"]
    expires, nonce, mac = token.split(".")
    assert mac == their_mac(key.read_text().strip().encode(), "5", COMMANDER, int(expires), nonce)
    assert factory.flows["order"].tokens.tokens.check(token, "5", COMMANDER, 1000.0).ok


@pytest_twisted.ensureDeferred
async def test_two_sessions_racing_with_one_token_let_one_through(database):
    from twisted.internet.defer import gatherResults
    gw = Gateway(database)
    try:
        good = gw.tokens.variables("12", COMMANDER, reactor.seconds(), 30)["YIHU_TOKEN"]
        records = await gatherResults([Deferred.fromCoroutine(gw.order_call(order_vars(good))) for _ in range(4)])
        assert len(gw.sink.answers) == 1
        assert sum("yihu/not-recorded" in r.played for r in records) == 3
        rows = await database.run(audits)
        assert [r["action"] for r in rows] == ["auth.refused.call_token_used"] * 3
    finally:
        await gw.stop()


@pytest_twisted.ensureDeferred
async def test_refusals_still_summing_are_written_at_shutdown(database):
    clock = Clock()
    refusals = RefusalAudit(clock, database, window=60.0)
    for _ in range(3):
        await refusals.refused_peer("192.0.2.9", "peer_not_allowed", {"port": 4000})
    await refusals.flush()
    rows = await database.run(audits)
    assert [(r["actor"], r["detail"]["count"]) for r in rows] == [("peer:192.0.2.9", 1), ("peer:192.0.2.9", 2)]
    assert clock.getDelayedCalls() == []            # the window's timer went with it


# --- used tokens: swept a week past their expiry --------------------------------------------------

class _Refusals:
    def __init__(self):
        self.reasons = []

    def refused(self, reason, actor, subject, detail):
        self.reasons.append(reason)
        return succeed(None)


@pytest_twisted.ensureDeferred
async def test_used_tokens_are_swept_a_week_past_expiry_and_a_replay_is_refused_before_and_after(database):
    from ivr.token_gate import UsedTokenSweep
    day = 86400.0
    clock = Clock()
    clock.advance(1_800_000_000)
    t0 = clock.seconds()
    tokens, refusals = CallTokens(KEY), _Refusals()
    gate = CallTokenGate(clock, database, tokens, refusals)

    async def use(delivery):
        token = tokens.variables(delivery, COMMANDER, clock.seconds(), 30)["YIHU_TOKEN"]
        assert await gate.admit(call_id=f"call-{delivery}", order_code="0427", token=token,
                                delivery=delivery, phone=COMMANDER)
        return token

    async def replay(token, delivery):
        assert not await gate.admit(call_id=f"again-{delivery}", order_code="0427", token=token,
                                    delivery=delivery, phone=COMMANDER)
        return refusals.reasons[-1]

    async def kept():
        rows = await database.run(lambda c: c.execute(select(call_tokens_used.c.delivery_id)).scalars().all())
        return sorted(rows)

    first = await use("11")                  # expires 150 s after t0
    clock.advance(2 * day)
    await use("12")                          # expires 2 days + 150 s after t0
    clock.advance(6 * day)
    latest = await use("13")
    assert await kept() == [11, 12, 13]

    class Watched(UsedTokenSweep):
        runs = []

        def sweep(self):
            return super().sweep().addCallback(lambda n: self.runs.append((clock.seconds() - t0, n)) or n)

    async def swept(count):
        deadline = reactor.seconds() + 10
        while len(Watched.runs) < count:
            assert reactor.seconds() < deadline, f"sweep {count} never ended: {Watched.runs}"
            await deferLater(reactor, 0.02, lambda: None)
        return Watched.runs[count - 1]

    sweep = Watched(clock, database)
    sweep.start()                            # at once, at t0 + 8 days: what expired before t0 + 1 day goes
    assert await swept(1) == (8 * day, 1)
    assert await kept() == [12, 13]
    # The row of a token still valid stays: its replay is refused as used; the swept one as expired.
    assert await replay(latest, "13") == "call_token_used"
    assert await replay(first, "11") == "call_token_expired"
    clock.advance(day)                       # daily: 12 expired 6 days 23 h ago, kept
    assert await swept(2) == (9 * day, 0)
    assert await kept() == [12, 13]
    clock.advance(day)                       # 12 expired more than a week ago
    assert await swept(3) == (10 * day, 1)
    assert await kept() == [13]
    sweep.stop()
