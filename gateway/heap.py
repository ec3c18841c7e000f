"""The garbage collector of a long-running gateway, set once its start-up is done.

Start-up leaves ~100k objects that live as long as the process (SQLAlchemy's tables and caches,
the services, the prompts); a full collection walks all of them, and stalled the reactor for a
quarter of a second in the middle of a burst of order calls (bench.agi_sessions).  Frozen, they
are out of the collector's way: it walks only what was made since.  The young thresholds stay
CPython's: young collections ten times rarer (tried) cost no less in all and pause the reactor
for longer each (14 ms, 24 ms for the middle generation, against 2 ms and 9 ms).  Full
collections are ten times rarer: a backlog of thousands of replies is live memory that each full
pass walks (bench.replies: up to 258 ms a pass, 1.27 s of the run; 0.18-0.41 s with this).
The gateway's entry point calls this, and so do the benches that measure it as it runs.
"""
from __future__ import annotations

import gc


FULL_COLLECTION_EVERY = 100     # middle-generation collections per full one (CPython: 10)


def settle_after_start() -> None:
    """Call once, after start-up: collect its garbage, then freeze what is left; full collections
    ten times rarer."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
