"""[hotline]: when a waiting citizen or an empty queue becomes the duty supervisor's business, and
what call-takers see about a caller."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HotlineSection:
    queue: str = "calltakers"                 # the call-takers' queue (dialplans/queues.conf)
    overflow_after_s: float = 60.0            # a caller waiting longer is an overflow (= queues.conf periodic-announce-frequency)
    supervisor_wait_s: float = 120.0          # overflow / no call-taker still on after this: SMS to the duty supervisor
    repeat_calls_24h: int = 2                 # earlier calls from the number within 24 h that flag this one "repeat"
    invalid_calls_30d: int = 3                # "often_invalid": at least this many earlier calls marked invalid in 30 days
    invalid_share_30d: float = 0.5            # "often_invalid": and at least this share of its marked calls in 30 days
    nuisance_notice: bool = True              # listed numbers marked notice hear their own prompt at the overflow point
    nuisance_refresh_s: float = 30.0          # how often the FastAGI side reloads the nuisance list

    def __post_init__(self):
        if self.overflow_after_s <= 0:
            raise ValueError("overflow_after_s must be > 0")
        if self.supervisor_wait_s < 0:
            raise ValueError("supervisor_wait_s must be >= 0")
        if self.repeat_calls_24h < 1 or self.invalid_calls_30d < 1:
            raise ValueError("repeat_calls_24h and invalid_calls_30d must be at least 1")
        if not 0 < self.invalid_share_30d <= 1:
            raise ValueError("invalid_share_30d must be more than 0 and at most 1")
        if self.nuisance_refresh_s <= 0:
            raise ValueError("nuisance_refresh_s must be positive")
