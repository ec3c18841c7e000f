"""The gateway's garbage-collector settings, made once the parts have started (gateway/cli.py), and
by the benchmarks at the same point so that they measure what runs in service."""
from __future__ import annotations

import gc


def settle_after_start() -> None:
    """Start-up objects (the roster, the team timers, modules) live as long as the process: moved
    out of the collector's way (gc.freeze), a full collection walks only what was made since; the
    full passes otherwise stall the reactor and every database thread (seen in the FastAGI and
    escalation benches)."""
    gc.collect()
    gc.freeze()
