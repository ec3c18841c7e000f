"""[ami]: the link to Asterisk's Manager Interface."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AmiSection:
    enabled: bool = True                             # follow the hotlines and place order calls
    host: str = "127.0.0.1"                          # Asterisk's AMI address (not used in embedded mode)
    port: int = 5038
    username: str = "yihu"                           # the manager.conf user (dialplans/manager.conf)
    secret: str = field(default="", repr=False)     # never logged; embedded mode makes its own
    secret_file: str = ""                            # a file whose first line is the secret (a container or systemd credential), instead of secret
    auth: str = "md5"                                # md5 (challenge) or plain
    events: str = "on"                               # Events: at login (manager.conf limits them anyway)
    action_timeout_s: float = 10.0                   # an action with no response by then fails
    ping_interval_s: float = 20.0                    # keepalive Ping
    ping_timeout_s: float = 10.0                     # no Pong by then: the connection is dropped, and made again
    backoff_max_s: float = 30.0                      # longest wait between reconnection attempts
    lines: list[str] = field(default_factory=lambda: ["110", "119", "122"])   # the hotlines followed

    def __post_init__(self):
        if self.auth not in ("md5", "plain"):
            raise ValueError(f"auth must be 'md5' or 'plain', got {self.auth!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")
