"""An AMI server on real TCP that behaves like Asterisk 22's manager interface.

Faithful to the recordings in shared/reference/asterisk-22: the banner line with no blank line
after it, ``Privilege:`` on events, the Response/Message texts, list actions (``EventList:
start`` ... ``EventList: Complete`` with ``ListItems``), OriginateResponse sent to *every*
session with the originator's ActionID, a failed login answered after about one second and
then the socket closed, the ``Events:`` mask given at login, Ping/Pong with a Timestamp, and
``core restart now`` closing every session without a word.

It plays scripted calls (``play(HotlineCall(...))``), replays recordings
(``play(Transcript.load(p).unsolicited())``, ``expect_originate(segment)``) and misbehaves on
request: ``drop_all()``, ``stall()``, ``send_raw(garbage)``, ``overlong_line()``, ``restart()``.
"""
from __future__ import annotations

import hashlib
import random
import time
from collections import deque

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from gateway.ami.emulator.model import ChannelModel, Ids, event, list_item, response
from gateway.ami.emulator.scenarios import OrderCall
from gateway.ami.emulator.transcript import Segment, rewrite_action_id
from gateway.ami.message import AmiMessage
from gateway.ami.parser import AmiParser

log = Logger()

ALL_CLASSES = frozenset({"system", "call", "log", "verbose", "command", "agent", "user", "config",
                         "dtmf", "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc",
                         "test", "security", "message"})

# Write class an action needs (any one of them), as in Asterisk's manager action registry.
ACTION_AUTH = {
    "Ping": (), "Events": (), "Logoff": (), "Login": (), "Challenge": (),
    "CoreShowChannels": ("system", "reporting"), "QueueStatus": (), "Originate": ("originate",),
    "Command": ("command",), "Hangup": ("system", "call"), "Status": ("system", "call", "reporting"),
    "CoreStatus": ("system", "reporting"),
}

# The rig's user (shared/reference/README.md).
RIG_USER = {"secret": "rig-secret",
            "read": "system,call,log,verbose,agent,user,config,dtmf,reporting,cdr,dialplan,originate",
            "write": "system,call,agent,user,config,command,reporting,originate"}


def _classes(spec) -> frozenset:
    if spec is None:
        return ALL_CLASSES
    if isinstance(spec, (set, frozenset, list, tuple)):
        items = spec
    else:
        items = [s.strip().lower() for s in str(spec).split(",") if s.strip()]
    if "all" in items:
        return ALL_CLASSES
    return frozenset(items)


def _event_mask(value: str | None):
    """Login/Events mask: 'on' -> everything, 'off' -> nothing, 'call,agent' -> those classes."""
    if value is None:
        return ALL_CLASSES
    v = value.strip().lower()
    if v in ("on", "yes", "true", "all", "1"):
        return ALL_CLASSES
    if v in ("off", "no", "false", "0", ""):
        return frozenset()
    return _classes(v)


class AmiServerSession(Protocol):
    def __init__(self, em: "AmiEmulator"):
        self.em = em
        self.parser = AmiParser(expect_banner=False, name="ami-emulator")
        self.authenticated = False
        self.username: str | None = None
        self.read = frozenset()
        self.write = frozenset()
        self.mask = ALL_CLASSES
        self.challenge: str | None = None
        self.stalled = False
        self.closing = False
        self.actions_seen: list[AmiMessage] = []

    # --- connection -----------------------------------------------------------------------------
    def connectionMade(self):
        self.em.sessions.append(self)
        # Each event goes out when emitted (no Nagle wait for the client's delayed ACK, up to
        # 40 ms on loopback): tests driven by a task.Clock see the bytes at once.  Same bytes.
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        if self.em.stall_new_sessions:
            self.stalled = True
            return
        self.transport.write(f"Asterisk Call Manager/{self.em.version}\r\n".encode())

    def connectionLost(self, reason=None):
        if self in self.em.sessions:
            self.em.sessions.remove(self)

    def send(self, msg: AmiMessage | bytes) -> None:
        if self.stalled or self.closing or self.transport is None:
            return
        self.transport.write(msg if isinstance(msg, bytes) else msg.to_bytes())

    def wants(self, cls: str) -> bool:
        return self.authenticated and cls in self.read and cls in self.mask

    # --- input ------------------------------------------------------------------------------
    def dataReceived(self, data: bytes):
        if self.stalled:
            return
        for msg in self.parser.feed(data):
            self.actions_seen.append(msg)
            self.em.actions.append(msg)
            if self.closing:
                return
            try:
                self.em.handle_action(self, msg)
            except Exception:
                log.failure("emulator: action {a} failed", a=msg.get("Action"))
                self.send(response(msg.get("ActionID"), "Error", ("Message", "Internal error")))


class _SessionFactory(Factory):
    def __init__(self, em):
        self.em = em

    def buildProtocol(self, addr):
        return AmiServerSession(self.em)


class AmiEmulator:
    """An Asterisk manager interface, for tests, drills and the embedded default.

    users: ``{"name": {"secret": ..., "read": "call,agent,...", "write": "..."}}``.
    """

    def __init__(self, reactor, users: dict | None = None, *, clock=None, version: str = "11.0.0",
                 asterisk_version: str = "22.10.1", channelvars=("HOTLINE", "ORDER_CODE"),
                 login_fail_delay: float = 1.0, originate_outcome=None, gateway_host="127.0.0.1",
                 queues: dict | None = None, speed: float = 1.0, seed: int | None = None):
        self.reactor = reactor
        self.clock = clock or reactor
        self.users = users if users is not None else {"gateway": dict(RIG_USER)}
        self.version = version
        self.asterisk_version = asterisk_version
        self.channelvars = tuple(channelvars)
        self.login_fail_delay = login_fail_delay
        self.originate_outcome = originate_outcome or default_originate_outcome
        self.gateway_host = gateway_host
        self.speed = speed
        self.random = random.Random(seed)
        self.queues = queues if queues is not None else {"calltakers": ["PJSIP/1001", "PJSIP/1002"]}
        self.sessions: list[AmiServerSession] = []
        self.actions: deque[AmiMessage] = deque(maxlen=1000)
        self.model = ChannelModel()
        self.port = None
        self._interface = "127.0.0.1"
        self._port_number = 0
        self.started_at = self.clock.seconds()
        self.reloaded_at = self.started_at
        self.ids = Ids(int(time.time()))
        self.stall_new_sessions = False
        self._originate_script: deque[Segment] = deque()
        self._running: list = []
        self._plays: set = set()
        self.restarts = 0
        self.sent_events = 0

    # --- listening --------------------------------------------------------------------------
    def listen(self, port: int = 0, interface: str = "127.0.0.1"):
        self._interface = interface
        self.port = self.reactor.listenTCP(port, _SessionFactory(self), interface=interface)
        self._port_number = self.port.getHost().port
        return self.port

    @property
    def port_number(self) -> int:
        return self._port_number

    def _go_silent(self, closing: bool = False) -> defer.Deferred:
        """Cancel every scenario step, drop every session without a word, stop listening."""
        for call in self._running:
            if call.active():
                call.cancel()
        self._running.clear()
        self._plays.clear()
        for s in list(self.sessions):
            if closing:
                s.closing = True
            if s.transport is not None:
                s.transport.abortConnection()
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening) if port is not None else defer.succeed(None)

    def stop(self) -> defer.Deferred:
        """Stop listening and close every session (for test teardown)."""
        return self._go_silent()

    # --- events out -------------------------------------------------------------------------------
    def emit(self, msg: AmiMessage) -> None:
        """Send an event to every session whose permissions and mask take its class."""
        self.model.apply(msg, self.clock.seconds())
        priv = msg.get("Privilege", "")
        cls = priv.split(",", 1)[0] if priv else "call"
        data = msg.to_bytes()
        for s in list(self.sessions):
            if s.wants(cls):
                s.send(data)
        self.sent_events += 1

    def send_raw(self, data: bytes, *, sessions=None) -> None:
        """Write bytes as they are (garbage, partial messages) to every (given) session."""
        for s in list(sessions if sessions is not None else self.sessions):
            s.send(data)

    def play(self, scenario, *, speed: float | None = None) -> defer.Deferred:
        """Play a scenario: an object with ``steps(emulator)`` or an iterable of
        ``(delay, events)``; events are AmiMessages, bytes (sent raw) or callables."""
        steps = scenario.steps(self) if hasattr(scenario, "steps") else scenario
        it = iter(steps)
        factor = 1.0 / (speed or self.speed)
        done = defer.Deferred()

        def advance():
            try:
                delay, items = next(it)
            except StopIteration:
                done.callback(scenario)
                return
            except Exception as e:   # a broken scenario must not hang a test
                done.errback(e)
                return
            if isinstance(delay, defer.Deferred):
                # Wait for something outside the script (the PBX's FastAGI session) to end.
                delay.addBoth(lambda _: fire(items) if self._steps_live(done) else None)
                return
            call = self.clock.callLater(max(0.0, delay * factor), fire, items)
            self._running.append(call)

        def fire(items):
            self._running[:] = [c for c in self._running if c.active()]
            for item in (items if isinstance(items, (list, tuple)) else [items]):
                if isinstance(item, AmiMessage):
                    self.emit(item)
                elif isinstance(item, (bytes, bytearray)):
                    self.send_raw(bytes(item))
                elif callable(item):
                    item(self)
            advance()

        self._plays.add(done)
        done.addBoth(self._play_over, done)
        advance()
        return done

    def _play_over(self, result, done):
        self._plays.discard(done)
        return result

    def _steps_live(self, done) -> bool:
        """A play waiting on a Deferred step is dropped by stop() and restart()."""
        return done in self._plays

    def order_call(self, headers: dict, action_id, outcome: str, is_async: bool) -> OrderCall:
        """The scenario an Originate plays (the PBX returns one that runs the FastAGI)."""
        return OrderCall(headers, action_id, outcome=outcome, is_async=is_async)

    # --- actions -----------------------------------------------------------------------------
    def handle_action(self, s: AmiServerSession, msg: AmiMessage) -> None:
        name = msg.get("Action")
        aid = msg.get("ActionID")
        if name is None:
            s.send(response(aid, "Error", ("Message", "Missing action in request")))
            return
        key = next((k for k in ACTION_AUTH if k.lower() == name.lower()), name)
        if not s.authenticated and key not in ("Login", "Challenge", "Logoff"):
            s.send(response(aid, "Error", ("Message", "Permission denied")))
            return
        handler = getattr(self, f"_action_{key.lower()}", None)
        if handler is None:
            s.send(response(aid, "Error", ("Message", f"Invalid/unknown command: {name}. "
                                                      "Use Action: ListCommands to show available commands.")))
            return
        need = ACTION_AUTH.get(key, ())
        if need and s.authenticated and not (s.write & set(need)):
            s.send(response(aid, "Error", ("Message", "Permission denied")))
            return
        handler(s, msg, aid)

    def _action_challenge(self, s, msg, aid):
        if (msg.get("AuthType") or "").lower() != "md5":
            s.send(response(aid, "Error", ("Message", "Must specify AuthType")))
            return
        s.challenge = str(self.random.randrange(100000000, 999999999))
        s.send(response(aid, "Success", ("Challenge", s.challenge)))

    def _action_login(self, s, msg, aid):
        user = self.users.get(msg.get("Username", ""))
        ok = False
        if user is not None:
            if (msg.get("AuthType") or "").lower() == "md5":
                if s.challenge:
                    want = hashlib.md5((s.challenge + user["secret"]).encode()).hexdigest()
                    ok = msg.get("Key", "") == want
            else:
                ok = msg.get("Secret") == user["secret"]
        if not ok:
            # Asterisk answers a failed login after about a second, then hangs up.
            s.closing = True

            def refuse():
                s.closing = False
                s.send(response(aid, "Error", ("Message", "Authentication failed")))
                s.closing = True
                if s.transport is not None:
                    s.transport.loseConnection()
            self.clock.callLater(self.login_fail_delay, refuse)
            return
        s.authenticated = True
        s.username = msg["Username"]
        s.read = _classes(user.get("read"))
        s.write = _classes(user.get("write"))
        s.mask = _event_mask(msg.get("Events"))
        s.send(response(aid, "Success", ("Message", "Authentication accepted")))
        if s.wants("system"):
            now = self.clock.seconds()
            s.send(event("FullyBooted", [("Uptime", str(int(now - self.started_at))),
                                         ("LastReload", str(int(now - self.reloaded_at))),
                                         ("Status", "Fully Booted")], cls="system"))

    def _action_logoff(self, s, msg, aid):
        s.send(response(aid, "Goodbye", ("Message", "Thanks for all the fish.")))
        s.closing = True
        s.transport.loseConnection()

    def _action_ping(self, s, msg, aid):
        s.send(response(aid, "Success", ("Ping", "Pong"),
                        ("Timestamp", f"{self.clock.seconds():.6f}")))

    def _action_events(self, s, msg, aid):
        s.mask = _event_mask(msg.get("EventMask"))
        s.send(response(aid, "Success", ("Events", "On" if s.mask else "Off")))

    def _action_coreshowchannels(self, s, msg, aid):
        items = self.model.core_show_channels(aid or "", self.clock.seconds())
        out = [response(aid, "Success", ("EventList", "start"),
                        ("Message", "Channels will follow"))]
        out += items
        done = [("Event", "CoreShowChannelsComplete")]
        if aid is not None:
            done.append(("ActionID", aid))
        done += [("EventList", "Complete"), ("ListItems", str(len(items)))]
        out.append(AmiMessage(done))
        s.send(b"".join(m.to_bytes() for m in out))

    def _action_queuestatus(self, s, msg, aid):
        now = self.clock.seconds()
        want = msg.get("Queue")
        tail = [("ActionID", aid)] if aid is not None else []
        items = []
        for q, members in self.queues.items():
            if want and want != q:
                continue
            waiting = [(u, c) for u, c in self.model.queue_callers.items() if c["queue"] == q]
            items.append(list_item("QueueParams", [
                ("Queue", q), ("Max", "0"), ("Strategy", "ringall"), ("Calls", str(len(waiting))),
                ("Holdtime", "0"), ("TalkTime", "0"), ("Completed", "0"), ("Abandoned", "0"),
                ("ServiceLevel", "0"), ("ServicelevelPerf", "0.0"), ("ServicelevelPerf2", "0.0"),
                ("Weight", "0")], tail))
            for m in members:
                items.append(list_item("QueueMember", [
                    ("Queue", q), ("Name", m), ("Location", m), ("StateInterface", m),
                    ("Membership", "static"), ("Penalty", "0"), ("CallsTaken", "0"),
                    ("LastCall", "0"), ("LastPause", "0"), ("LoginTime", str(int(self.started_at))),
                    ("InCall", "0"), ("Status", "1"), ("Paused", "0"), ("PausedReason", ""),
                    ("Wrapuptime", "0")], tail))
            for pos, (uid, c) in enumerate(waiting, 1):
                ch = self.model.channels.get(uid, {})
                block = dict(ch.get("block", []))
                items.append(list_item("QueueEntry", [
                    ("Queue", q), ("Position", str(pos)), ("Channel", block.get("Channel", "")),
                    ("Uniqueid", uid), ("CallerIDNum", block.get("CallerIDNum", "<unknown>")),
                    ("CallerIDName", block.get("CallerIDName", "<unknown>")),
                    ("ConnectedLineNum", block.get("ConnectedLineNum", "<unknown>")),
                    ("ConnectedLineName", block.get("ConnectedLineName", "<unknown>")),
                    ("Wait", str(int(now - c["joined"]))), ("Priority", "0")], tail))
        out = [response(aid, "Success", ("EventList", "start"),
                        ("Message", "Queue status will follow"))]
        out += items
        done = [("Event", "QueueStatusComplete")] + tail + [("EventList", "Complete"),
                                                             ("ListItems", str(len(items)))]
        out.append(AmiMessage(done))
        s.send(b"".join(m.to_bytes() for m in out))

    def _action_command(self, s, msg, aid):
        cmd = " ".join((msg.get("Command") or "").split()).lower()
        if cmd in ("core restart now", "core restart gracefully", "core stop now"):
            # Recorded: no reply, no Shutdown event, the socket just closes.
            self.restart()
            return
        if cmd == "core show version":
            out = [f"Asterisk {self.asterisk_version} built by yihu @ emulator"]
        elif cmd == "core show channels count":
            out = [f"{len(self.model.channels)} active channels"]
        else:
            out = [f"No such command '{msg.get('Command')}' (type 'core show help "
                   f"{msg.get('Command')}' for other possible commands)"]
        s.send(response(aid, "Success", ("Message", "Command output follows"),
                        *[("Output", line) for line in out]))

    def _action_originate(self, s, msg, aid):
        if not msg.get("Channel"):
            s.send(response(aid, "Error", ("Message", "Channel not specified")))
            return
        if not (msg.get("Exten") or msg.get("Application")):
            s.send(response(aid, "Error", ("Message", "Exten not specified")))
            return
        is_async = (msg.get("Async") or "").lower() in ("true", "yes", "1", "on")
        headers = dict(msg.first)
        headers["Variable"] = originate_variables(msg.getall("Variable"))
        if self._originate_script:
            seg = self._originate_script.popleft()
            self._replay_segment(s, seg, aid)
            return
        outcome = self.originate_outcome(headers)
        call = self.order_call(headers, aid if is_async else None, outcome, is_async)
        if is_async:
            s.send(response(aid, "Success", ("Message", "Originate successfully queued")))
            self.play(call)
        else:
            # A synchronous Originate is answered once the outcome is known, with no event.
            def answer(_):
                if outcome == "answered":
                    s.send(response(aid, "Success", ("Message", "Originate successfully queued")))
                else:
                    s.send(response(aid, "Error", ("Message", "Originate failed")))
            self.play(call).addCallback(answer)

    # --- replaying recorded originates ---------------------------------------------------------
    def expect_originate(self, *segments: Segment) -> None:
        """Answer the client's next Originate(s) with recorded segments (ActionID rewritten)."""
        self._originate_script.extend(segments)

    def _replay_segment(self, s, seg: Segment, aid):
        old = seg.action_id
        if seg.response is not None:
            s.send(rewrite_action_id(seg.response, old, aid) if aid else seg.response)
        steps, prev = [], 0.0
        for delay, m in seg.events:
            steps.append((max(0.0, delay - prev), [rewrite_action_id(m, old, aid) if aid else m]))
            prev = delay
        self.play(steps)

    # --- misbehaviour --------------------------------------------------------------------------
    def drop_all(self) -> None:
        """Every session's TCP connection torn down at once (RST), as when a cable is pulled."""
        for s in list(self.sessions):
            if s.transport is not None:
                s.transport.abortConnection()

    def stall(self, *, new_sessions: bool = False) -> None:
        """Existing sessions stop answering and sending (the socket stays open): half-open.
        ``new_sessions``: connections made from now on stall too (no banner)."""
        for s in self.sessions:
            s.stalled = True
        self.stall_new_sessions = new_sessions

    def unstall(self) -> None:
        self.stall_new_sessions = False

    def outage(self, seconds: float) -> defer.Deferred:
        """The network between gateway and Asterisk fails for ``seconds``: every session is
        torn down and connections are refused, while the calls go on (and may end)."""
        self.drop_all()
        port, self.port = self.port, None
        stopped = defer.maybeDeferred(port.stopListening) if port is not None else defer.succeed(None)
        done = defer.Deferred()

        def back():
            self.port = self.reactor.listenTCP(self._port_number, _SessionFactory(self),
                                               interface=self._interface)
            done.callback(self.port)
        stopped.addCallback(lambda _: self.clock.callLater(seconds, back))
        return done

    def overlong_line(self, size: int = 100_000) -> None:
        """One header line far past any sane length, then a good event."""
        self.send_raw(b"Event: Garbage\r\nJunk: " + b"x" * size + b"\r\n\r\n")

    def restart(self, delay: float = 1.0, version: str | None = None) -> defer.Deferred:
        """Asterisk restarts: every session closed without a word, nothing listens for
        ``delay`` seconds, then a fresh Asterisk (no channels, uptime 0) with a new banner."""
        self.restarts += 1
        stopped = self._go_silent(closing=True)
        self.model.clear()
        if version is not None:
            self.version = version
        done = defer.Deferred()

        def relisten(_):
            def again():
                self.started_at = self.reloaded_at = self.clock.seconds()
                self.port = self.reactor.listenTCP(self._port_number, _SessionFactory(self),
                                                   interface=self._interface)
                done.callback(self.port)
            self.clock.callLater(delay, again)
        stopped.addCallback(relisten)
        return done


def default_originate_outcome(headers: dict) -> str:
    """Pick an Originate's outcome from the dialled channel: ``.../busy@...`` is busy,
    ``noanswer``, ``congest`` and ``nosuch``/``nowhere`` likewise; anything else answers."""
    ch = (headers.get("Channel") or "").lower()
    for word, outcome in (("busy", "busy"), ("noanswer", "noanswer"), ("congest", "congestion"),
                          ("nosuch", "nosuch"), ("nowhere", "nosuch"), ("nobody", "nosuch")):
        if word in ch:
            return outcome
    return "answered"



def originate_variables(values: list[str]) -> list[str]:
    """As Asterisk's manager reads Originate `Variable:` headers (astman_get_variables_order):
    every header, each split on commas, each item NAME=VALUE set on the new channel."""
    return [item for value in values for item in value.split(",") if item.partition("=")[0].strip()]
