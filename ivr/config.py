"""[ivr]: the FastAGI server and the voice order calls."""
from __future__ import annotations

from dataclasses import dataclass

from ivr.peers import DEFAULT_PEERS, parse_peers


@dataclass(frozen=True)
class IvrSection:
    enabled: bool = True                  # run the FastAGI server
    interface: str = "127.0.0.1"          # where Asterisk connects (agi://HOST:PORT/...)
    port: int = 4573                      # FastAGI's usual port; 0: any free port (embedded mode tells the emulated Asterisk)
    channel_template: str = "PJSIP/{national}@trunk"    # how to dial a commander's phone
    caller_id: str = '"Command Center" <057687770110>'   # shown on commanders' phones
    call_attempts: int = 3                # voice calls per commander, the first included
    call_retry_delay_s: float = 60.0      # between attempts (busy, no answer, failed)
    ring_timeout_s: float = 30.0          # how long a commander's phone rings
    menu_timeout_ms: int = 5000           # wait for a key after the menu; no key twice = no answer
    speech: bool = True                   # read the order text aloud where espeak-ng and sox exist
    spool_dir: str = ""                   # classic-AGI fallback spool; empty: DATA_DIR/spool/keypad
    recordings_dir: str = ""              # where Asterisk writes spoken situation reports (key 5); empty: DATA_DIR/recordings
    allowed_peers: tuple[str, ...] = DEFAULT_PEERS   # who may open FastAGI sessions (Asterisk): addresses or networks
    token_secret: str = ""                # HMAC key of order-call tokens, never logged; empty: DATA_DIR/ivr-token.key
    token_grace_s: float = 120.0          # an order-call token is valid for the ring time plus this
    refusal_window_s: float = 60.0        # refused connections from one address: one log line and audit row per window
    env_timeout_s: float = 5.0            # a FastAGI connection that sends no agi_ environment within this is closed
    command_timeout_s: float = 10.0       # Asterisk's answer to a non-media AGI command; none in time: the session is out of step, closed

    def __post_init__(self):
        if "{national}" not in self.channel_template and "{phone}" not in self.channel_template:
            raise ValueError("channel_template must contain {national} (0-prefixed national number) "
                             "or {phone} (international digits without +)")
        if self.call_attempts < 1:
            raise ValueError("call_attempts must be at least 1")
        parse_peers(self.allowed_peers)         # ValueError naming the entry
        if self.token_secret and len(self.token_secret) < 16:
            raise ValueError("token_secret must be at least 16 characters (or empty: the gateway makes one)")
        if self.token_grace_s <= 0 or self.refusal_window_s <= 0:
            raise ValueError("token_grace_s and refusal_window_s must be positive")
        if self.env_timeout_s <= 0 or self.command_timeout_s <= 0:
            raise ValueError("env_timeout_s and command_timeout_s must be positive")
