"""The [sms] section of the gateway configuration."""
from __future__ import annotations

from dataclasses import dataclass, field

UNKNOWN_RESEND = "resend"   # after unknown_wait with no report: send again (a duplicate is possible, counted)
UNKNOWN_FAIL = "fail"       # after unknown_wait: report the message "unknown"; people follow up by voice


@dataclass(frozen=True)
class SmsConfig:
    ports: tuple[str, ...] = ()                # serial ports of the modem bank (stable by-id paths)
    baudrate: int = 115200
    sim_pin: str | None = field(default=None, repr=False)   # never printed
    segments_per_minute: float = 0.0           # per-modem rate limit; 0 = as fast as the modem goes
    expected_segment_seconds: float = 5.0      # first guess of a modem's time per segment
    submit_timeout: float = 60.0               # +CMGS answer after the PDU was written
    prompt_timeout: float = 10.0               # "> " after AT+CMGS=<n>
    command_timeout: float = 10.0
    max_attempts: int = 5                      # per segment, for retryable errors
    retry_delay: float = 10.0                  # before a retryable error is tried again
    late_answer_grace: float = 60.0            # after an unanswered +CMGS: no new submission on that
                                               # modem for this long, so a late "+CMGS: <mr>" is
                                               # matched to the right segment
    unknown_policy: str = UNKNOWN_RESEND
    unknown_wait: float = 120.0                # wait this long for a status report / late +CMGS
    status_reports: bool = True                # ask for them (TP-SRR): they settle unknown outcomes
    affinity_wait: float = 60.0                # a half-sent message waits this long for its modem
    reassembly_timeout: float = 300.0          # multi-part replies: give what came after this
    probe_interval: float = 30.0               # AT+CSQ / AT+CREG? health probe
    sim_sweep_probes: int = 5                  # list the whole SIM every N probes (0: only at init)
    errors_to_bench: int = 3                   # consecutive errors that bench a modem
    bench_cooldown: float = 120.0              # benched modem is tried again after this
    reopen_interval: float = 2.0               # first delay before reopening a vanished port
    reopen_max_interval: float = 30.0
    concat_ref_bits: int = 8                   # 8: 153/67 per part; 16: 152/66
    validity_minutes: int = 24 * 60
    planning_horizon: int = 64                 # messages looked at per scheduling round
    drain_seconds: float = 20.0                # at SIGTERM: wait this long for segments in flight to be answered

    def __post_init__(self):
        if self.unknown_policy not in (UNKNOWN_RESEND, UNKNOWN_FAIL):
            raise ValueError(f"sms.unknown_policy must be {UNKNOWN_RESEND!r} or {UNKNOWN_FAIL!r}")
        if self.concat_ref_bits not in (8, 16):
            raise ValueError("sms.concat_ref_bits must be 8 or 16")

    @property
    def min_interval(self) -> float:
        return 60.0 / self.segments_per_minute if self.segments_per_minute > 0 else 0.0
