"""[ami]: the link to Asterisk's Manager Interface."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AmiSection:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "yihu"
    secret: str = field(default="", repr=False)     # never logged; embedded mode makes its own
    auth: str = "md5"                                # md5 (challenge) or plain
    events: str = "on"                               # Events: at login (manager.conf limits them anyway)
    action_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 10.0
    backoff_max_s: float = 30.0
    lines: list[str] = field(default_factory=lambda: ["110", "119", "122"])

    def __post_init__(self):
        if self.auth not in ("md5", "plain"):
            raise ValueError(f"auth must be 'md5' or 'plain', got {self.auth!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")
