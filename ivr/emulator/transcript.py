"""Recorded FastAGI sessions (NAME.agi.jsonl): load them and replay Asterisk's side verbatim."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from ivr.emulator.channel import Reply


@dataclass
class Transcript:
    name: str
    env_chunks: list[str]                              # Asterisk's chunks before the first command
    exchanges: list[tuple[str, list[str]]]             # (command line, Asterisk's chunks after it)
    delays: list[float] = field(default_factory=list)  # seconds from each command to Asterisk's answer

    @classmethod
    def load(cls, path) -> "Transcript":
        path = Path(path)
        env_chunks: list[str] = []
        exchanges: list[tuple[str, list[str]]] = []
        sent_at: list[float] = []
        delays: list[float] = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.strip():
                continue
            chunk = json.loads(raw)
            if chunk["dir"] == ">":
                for cmd in chunk["data"].splitlines():
                    exchanges.append((cmd, []))
                    sent_at.append(chunk["t"])
                    delays.append(0.0)
            elif exchanges:
                if not exchanges[-1][1]:
                    delays[-1] = max(0.0, chunk["t"] - sent_at[-1])
                exchanges[-1][1].append(chunk["data"])
            else:
                env_chunks.append(chunk["data"])
        return cls(path.name.split(".")[0], env_chunks, exchanges, delays)

    @property
    def environment(self) -> dict[str, str]:
        env = {}
        for line in "".join(self.env_chunks).splitlines():
            k, sep, v = line.partition(": ")
            if sep or line.endswith(":"):
                env[k.rstrip(":")] = v
        return env

    @property
    def commands(self) -> list[str]:
        return [c for c, _ in self.exchanges]


@dataclass
class ReplayResult:
    transcript: str
    sent: list[str] = field(default_factory=list)         # what the gateway sent
    expected: list[str] = field(default_factory=list)     # what the recorded server sent
    closed_by: str = ""

    @property
    def matches(self) -> bool:
        return self.sent == self.expected


class TranscriptResponder:
    """Answers the i-th command with the chunks Asterisk sent after the i-th recorded command."""

    def __init__(self, transcript: Transcript, pace: float = 0.0):
        self.transcript = transcript
        self.i = 0
        self.pace = pace

    def __call__(self, line: str) -> Reply:
        if self.i >= len(self.transcript.exchanges):
            # Beyond the recording Asterisk would still be there; the channel is treated as dead.
            return Reply(["511 Command Not Permitted on a dead channel or intercept routine"])
        _cmd, chunks = self.transcript.exchanges[self.i]
        self.i += 1
        text = "".join(chunks)
        return Reply(text.splitlines() if text else [], self.transcript.delays[self.i - 1] * self.pace)


async def replay_transcript(reactor, host: str, port: int, path, *, idle_timeout: float = 5.0,
                            pace: float = 0.0) -> ReplayResult:
    """Replay Asterisk's side of a recorded session against a FastAGI server.  pace=1.0 answers
    each command after the delay Asterisk took in the recording (0: at once)."""
    from ivr.emulator.client import AgiClientProtocol, CallRecord
    t = Transcript.load(path)
    responder = TranscriptResponder(t, pace)
    record = CallRecord(script=t.environment.get("agi_network_script", ""))
    proto = AgiClientProtocol(reactor, "".join(t.env_chunks).encode(), responder, record,
                              idle_timeout=idle_timeout)
    await connectProtocol(TCP4ClientEndpoint(reactor, host, port, timeout=5), proto)
    await proto.done
    return ReplayResult(t.name, record.commands, t.commands, record.closed_by)
