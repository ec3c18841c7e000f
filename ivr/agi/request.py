"""The agi_ environment Asterisk sends first, and the script name and query it carries."""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

UNKNOWN_CALLER = ("", "unknown", "anonymous", "<unknown>")


@dataclass(frozen=True)
class AgiRequest:
    env: dict[str, str]
    script: str                 # "hotline", "order", "feedback", "overflow"
    params: dict[str, str] = field(default_factory=dict)   # first value of each query parameter

    @property
    def call_id(self) -> str:
        """Asterisk's Uniqueid: our ChannelId on calls we originate."""
        return self.env.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def caller(self) -> str | None:
        """The calling number, or None when Asterisk does not know it."""
        cid = self.env.get("agi_callerid", "").strip()
        return None if cid.lower() in UNKNOWN_CALLER else cid


def parse_request(env: dict[str, str]) -> AgiRequest:
    """Build the request from the environment; tolerant of a missing or odd script field."""
    target = env.get("agi_network_script") or ""
    if not target:
        # agi://host:port/script?query: the path holds it
        url = urlsplit(env.get("agi_request", ""))
        target = url.path + ("?" + url.query if url.query else "")
    path, _, query = target.partition("?")
    script = path.strip("/").split("/")[-1].lower() if path.strip("/") else ""
    params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return AgiRequest(env=dict(env), script=script, params=params)
