"""The [cluster] section: how nodes sharing one PostgreSQL database tell each other they live."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterSection:
    node_timeout_s: float = 15.0           # a node whose heartbeat is older than this is dead: its work and leases return to the pool
    heartbeat_s: float = 3.0               # how often a node writes its heartbeat (well under node_timeout_s)

    def __post_init__(self):
        if self.node_timeout_s <= 0 or self.heartbeat_s <= 0:
            raise ValueError("node_timeout_s and heartbeat_s must be positive")
        if self.heartbeat_s * 2 > self.node_timeout_s:
            raise ValueError(f"heartbeat_s ({self.heartbeat_s:g}) must be at most half of node_timeout_s "
                             f"({self.node_timeout_s:g}), or one late heartbeat declares a live node dead")
