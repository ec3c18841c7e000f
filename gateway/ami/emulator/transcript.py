"""Recorded AMI transcripts (``NAME.ami.jsonl``) as emulator scenarios.

A transcript holds both sides of a real Asterisk 22 session.  Two ways to replay its server side
to a live client:

- ``unsolicited(speed)``: every event Asterisk sent, at the recorded pace, as if the recording
  client (another AMI user) had caused them: responses to the recorder's actions and the items
  of its lists are left out, OriginateResponses keep the recorder's ActionID (Asterisk broadcasts
  them, and a client must ignore foreign ones).  This is how the hotline recordings are played.
- ``originate_segments()``: for each Originate the recorder sent, its Response and the events
  that followed until the recorder's next action.  ``AmiEmulator.expect_originate(segment)``
  answers the *client's* next Originate with it, rewriting the recorded ActionID to the client's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gateway.ami.message import AmiMessage
from gateway.ami.parser import AmiParser


@dataclass
class Segment:
    """The server's answer to one recorded action: the Response and what followed."""
    action: AmiMessage
    action_id: str
    response: AmiMessage | None
    events: list[tuple[float, AmiMessage]] = field(default_factory=list)   # (delay from response)


class Transcript:
    def __init__(self, name: str, server: list[tuple[float, AmiMessage]],
                 client: list[tuple[float, AmiMessage]], server_bytes: bytes):
        self.name = name
        self.server = server
        self.client = client
        self.server_bytes = server_bytes

    @classmethod
    def load(cls, path) -> "Transcript":
        path = Path(path)
        sp = AmiParser(expect_banner=True, name=f"transcript:{path.name}")
        cp = AmiParser(expect_banner=False, name=f"transcript:{path.name}")
        server, client, raw = [], [], []
        with path.open(encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                chunk = json.loads(line)
                data = chunk["data"].encode("utf-8")
                if chunk["dir"] == "<":
                    raw.append(data)
                    server.extend((chunk["t"], m) for m in sp.feed(data))
                else:
                    client.extend((chunk["t"], m) for m in cp.feed(data))
        name = path.name.split(".")[0]
        return cls(name, server, client, b"".join(raw))

    # --- views ---------------------------------------------------------------------------------
    @property
    def banner(self) -> str | None:
        return next((m["Banner"] for _t, m in self.server if m.kind == "banner"), None)

    def client_actions(self) -> dict[str, AmiMessage]:
        return {m.get("ActionID"): m for _t, m in self.client if m.get("ActionID")}

    def events(self) -> list[AmiMessage]:
        return [m for _t, m in self.server if m.kind == "event"]

    def responses(self) -> dict[str, AmiMessage]:
        return {m.get("ActionID"): m for _t, m in self.server if m.kind == "response"}

    def unsolicited(self, speed: float = 1.0):
        """Emulator steps: the recorded events, paced, without answers to the recorder."""
        actions = self.client_actions()
        listed = {aid for aid, a in actions.items() if a.get("Action") != "Originate"}
        steps, prev = [], None
        for t, m in self.server:
            if m.kind != "event" or m.name == "FullyBooted":
                continue
            if m.get("ActionID") in listed:
                continue
            delay = 0.0 if prev is None else max(0.0, t - prev)
            prev = t
            steps.append((delay / speed if speed else 0.0, [m]))
        return steps

    def originate_segments(self) -> list[Segment]:
        """One Segment per recorded Originate, in order."""
        originates = [(t, m) for t, m in self.client if m.get("Action") == "Originate"]
        later_actions = sorted(t for t, _m in self.client)
        segs = []
        for t0, action in originates:
            aid = action.get("ActionID")
            nxt = next((t for t in later_actions if t > t0), float("inf"))
            resp, resp_t, events = None, None, []
            for t, m in self.server:
                if t < t0 or t >= nxt:
                    continue
                if m.kind == "response" and m.get("ActionID") == aid and resp is None:
                    resp, resp_t = m, t
                elif m.kind == "event" and resp is not None:
                    events.append((t - resp_t, m))
            segs.append(Segment(action, aid, resp, events))
        return segs


def rewrite_action_id(msg: AmiMessage, old: str, new: str) -> AmiMessage:
    if msg.get("ActionID") != old:
        return msg
    return AmiMessage([(k, new if k == "ActionID" and v == old else v) for k, v in msg])
