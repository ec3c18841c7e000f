"""Claiming work rows among nodes (issue 13), in SQL: each runs inside the caller's transaction.

A work row (delivery, SMS message, call attempt, escalation step, webhook subscriber) carries the
node that claimed it in `owner_node`.  A node takes only rows that are free or its own or owned by
a dead node (`nodes.free_or_mine`), locks them with `FOR UPDATE SKIP LOCKED` on PostgreSQL (a row
another node is claiming right now is skipped, never waited for nor taken twice; SQLite has one
writer and ignores it) and writes its name on them in the same transaction.  A node's own rows
are always its own, whether or not its heartbeat is in `nodes` yet.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_

from gateway.cluster import nodes


@dataclass(frozen=True)
class Claimer:
    """Who claims (this node's name) and when another node counts as dead."""
    node: str = "yihu-1"
    timeout_s: float = 15.0

    def free_or_mine(self, owner_col, now: datetime):
        return nodes.free_or_mine(owner_col, self.node, now, self.timeout_s)

    def mine_or_dead(self, owner_col, now: datetime):
        """This node's rows and dead nodes' (a start resets these, never a live node's); a row
        with no owner counts too (left by a gateway from before owners, or never claimed)."""
        return nodes.free_or_mine(owner_col, self.node, now, self.timeout_s)

    def dead_not_me(self, owner_col, now: datetime):
        """Rows of dead nodes, to be taken over (never this node's own, even before its first heartbeat)."""
        return and_(nodes.owned_by_dead(owner_col, now, self.timeout_s), owner_col != self.node)


def skip_locked(q, conn, *of):
    """SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL (rows another node is claiming are passed
    over); SQLite serialises writers and has no row locks."""
    if conn.dialect.name == "postgresql":
        return q.with_for_update(skip_locked=True, of=list(of) or None)
    return q
