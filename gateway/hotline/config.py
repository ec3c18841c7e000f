"""[hotline]: when a waiting citizen or an empty queue becomes the duty supervisor's business."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HotlineSection:
    queue: str = "calltakers"                 # the call-takers' queue (dialplans/queues.conf)
    overflow_after_s: float = 60.0            # a caller waiting longer is an overflow (= queues.conf periodic-announce-frequency)
    supervisor_wait_s: float = 120.0          # overflow / no call-taker still on after this: SMS to the duty supervisor

    def __post_init__(self):
        if self.overflow_after_s <= 0:
            raise ValueError("overflow_after_s must be > 0")
        if self.supervisor_wait_s < 0:
            raise ValueError("supervisor_wait_s must be >= 0")
