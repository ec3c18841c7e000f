"""A diagnostic check of an AMI endpoint with a second, independent client: asterisk-ami.

``check_ami(host, port, user, secret)`` is blocking (asterisk-ami runs a reader thread and
waits on futures): from the service call ``check_ami_deferred(reactor, ...)``, which runs it in
a thread off the reactor.  It answers the questions an on-call engineer asks first: can I reach
the port, is it Asterisk, does the login work, does it answer Ping, how many channels are up and
how many of them are hotline calls, which queues and members exist.  A second client matters:
when our link says "down", this tells whether Asterisk or the link is at fault.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

from twisted.internet.threads import deferToThread


@dataclass
class AmiCheck:
    host: str
    port: int
    reachable: bool = False
    banner: str | None = None
    logged_in: bool = False
    ping_ms: float | None = None
    channels: int | None = None
    hotline_calls: int | None = None
    queues: dict = field(default_factory=dict)       # queue -> {"members": n, "callers": n}
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.logged_in and self.ping_ms is not None and self.error is None

    def lines(self) -> list[str]:
        out = [f"AMI {self.host}:{self.port}: {'OK' if self.ok else 'PROBLEM'}",
               f"  reachable: {'yes' if self.reachable else 'no'}",
               f"  banner:    {self.banner or '-'}",
               f"  login:     {'accepted' if self.logged_in else 'refused or not tried'}",
               f"  ping:      {'-' if self.ping_ms is None else f'{self.ping_ms:.1f} ms'}",
               f"  channels:  {'-' if self.channels is None else self.channels}"
               f" (hotline calls: {'-' if self.hotline_calls is None else self.hotline_calls})"]
        for q, v in sorted(self.queues.items()):
            out.append(f"  queue {q}: {v.get('members', 0)} member(s), {v.get('callers', 0)} waiting")
        if self.error:
            out.append(f"  error:     {self.error}")
        return out


def check_ami(host: str, port: int, username: str, secret: str, *, timeout: float = 5.0,
              hotline_var: str = "HOTLINE") -> AmiCheck:
    """Blocking check with asterisk-ami's AMIClient (plain login: that client has no MD5)."""
    from asterisk.ami import AMIClient, SimpleAction
    res = AmiCheck(host, port)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            res.reachable = True
            res.banner = s.recv(200).split(b"\r\n", 1)[0].decode("utf-8", "replace") or None
    except OSError as e:
        res.error = f"cannot connect: {e}"
        return res
    events: list = []
    lock = threading.Lock()

    def on_event(event, source=None, **_kw):
        with lock:
            events.append(event)
    client = AMIClient(address=host, port=port, timeout=timeout)
    client.add_event_listener(on_event)
    try:
        f = client.login(username=username, secret=secret)
        r = f.response
        if r is None or r.is_error():
            res.error = "login refused: " + (r.keys.get("Message", "no answer") if r else "no answer")
            return res
        res.logged_in = True
        t0 = time.perf_counter()
        r = client.send_action(SimpleAction("Ping")).response
        if r is not None and not r.is_error():
            res.ping_ms = (time.perf_counter() - t0) * 1000
        for action in ("CoreShowChannels", "QueueStatus"):
            r = client.send_action(SimpleAction(action)).response
            if r is None:
                res.error = f"{action}: no answer within {timeout:g} s"
                continue
            if r.is_error():
                res.error = f"{action}: {r.keys.get('Message')}"
                continue
            aid = r.keys.get("ActionID")
            done = f"{action}Complete"
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with lock:
                    if any(e.name.endswith("Complete") and e.keys.get("ActionID") == aid
                           for e in events):
                        break
                threading.Event().wait(0.02)
            with lock:
                mine = [e for e in events if e.keys.get("ActionID") == aid and e.name != done]
            if action == "CoreShowChannels":
                res.channels = len(mine)
                res.hotline_calls = len({
                    e.keys.get("Linkedid") for e in mine
                    if (e.keys.get("ChanVariable") or {}).get(hotline_var)
                    and e.keys.get("Application") not in ("AppDial", "AppDial2", "AppQueue")})
            else:
                for e in mine:
                    q = res.queues.setdefault(e.keys.get("Queue", "?"), {"members": 0, "callers": 0})
                    if e.name == "QueueMember":
                        q["members"] += 1
                    elif e.name == "QueueEntry":
                        q["callers"] += 1
        client.logoff()
    except Exception as e:            # a diagnostic reports, it does not raise
        res.error = f"{e.__class__.__name__}: {e}"
    finally:
        client.disconnect()
    return res


def check_ami_deferred(reactor, *args, **kw):
    """The check, run in a thread off the reactor: Deferred[AmiCheck]."""
    return deferToThread(check_ami, *args, **kw)
