"""[ivr]: the FastAGI server and the voice order calls."""
from __future__ import annotations

from dataclasses import dataclass


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

    def __post_init__(self):
        if "{national}" not in self.channel_template and "{phone}" not in self.channel_template:
            raise ValueError("channel_template must contain {national} (0-prefixed national number) "
                             "or {phone} (international digits without +)")
        if self.call_attempts < 1:
            raise ValueError("call_attempts must be at least 1")
