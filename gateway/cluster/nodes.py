"""Nodes and their liveness, in SQL (no Twisted): each runs inside the caller's transaction.

A node is alive while its heartbeat is younger than `timeout_s` and it has not stopped.  Work rows
carry an owner node name; a row whose owner is null, unknown or dead is free to be claimed.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, insert, or_, select, update

from gateway.storage.schema import nodes


class NodeNameTaken(RuntimeError):
    """Another live node already runs under this gateway.node_name."""


def _deadline(now: datetime, timeout_s: float) -> datetime:
    return now - timedelta(seconds=timeout_s)


def alive_clause(now: datetime, timeout_s: float):
    """SQL: the `nodes` row is a live node."""
    return and_(nodes.c.stopped_at.is_(None), nodes.c.heartbeat_at >= _deadline(now, timeout_s))


def live_node_names(now: datetime, timeout_s: float):
    """A SELECT of the live nodes' names (for `IN (...)`)."""
    return select(nodes.c.name).where(alive_clause(now, timeout_s))


def free_or_mine(owner_column, me: str, now: datetime, timeout_s: float):
    """SQL: a work row this node may take: unowned, its own, or owned by a node that is not alive."""
    return or_(owner_column.is_(None), owner_column == me,
               owner_column.not_in(live_node_names(now, timeout_s)))


def owned_by_dead(owner_column, now: datetime, timeout_s: float):
    """SQL: a work row whose owner is set but no longer alive (to be taken over)."""
    return and_(owner_column.is_not(None), owner_column.not_in(live_node_names(now, timeout_s)))


def register_tx(conn, name: str, host: str, pid: int, now: datetime, timeout_s: float,
                gone=None) -> None:
    """Claim the node name at start; NodeNameTaken if a live node holds it (a clean stop or a
    heartbeat older than the timeout frees it: a node killed with -9 restarts after timeout_s).
    `gone(host, pid)`, when given, says the holder's process is known to have died (the same machine
    and that pid no longer runs): a node restarted on its machine after kill -9 need not wait."""
    row = conn.execute(select(nodes).where(nodes.c.name == name).with_for_update()).first()
    if row is None:
        conn.execute(insert(nodes).values(name=name, host=host, pid=pid, started_at=now, heartbeat_at=now))
        return
    if row.host == host and row.pid == pid and row.stopped_at is None:
        # this very process registered already (`yihu run` claims the name before the reactor starts)
        conn.execute(update(nodes).where(nodes.c.name == name).values(heartbeat_at=now))
        return
    dead = gone is not None and row.stopped_at is None and gone(row.host, row.pid)
    if row.stopped_at is None and not dead and row.heartbeat_at >= _deadline(now, timeout_s):
        raise NodeNameTaken(f"gateway.node_name {name!r} is held by a live node (pid {row.pid} on {row.host}, "
                            f"heartbeat {(now - row.heartbeat_at).total_seconds():.1f}s ago); choose another "
                            f"name or wait {timeout_s:g}s after that node died")
    conn.execute(update(nodes).where(nodes.c.name == name).values(
        host=host, pid=pid, started_at=now, heartbeat_at=now, stopped_at=None))


def heartbeat_tx(conn, name: str, now: datetime, modems: int | None = None, *, host: str | None = None,
                 pid: int | None = None) -> bool:
    """Renew this node's heartbeat; False if the row is not ours any more (taken after we were
    declared dead): the node must then stop claiming work.  `host` and `pid`, when given, must
    still be ours (another process may have registered the name once we were declared dead)."""
    values = {"heartbeat_at": now}
    if modems is not None:
        values["modems"] = modems
    where = [nodes.c.name == name, nodes.c.stopped_at.is_(None)]
    if host is not None:
        where.append(nodes.c.host == host)
    if pid is not None:
        where.append(nodes.c.pid == pid)
    return conn.execute(update(nodes).where(*where).values(**values)).rowcount == 1


def stop_tx(conn, name: str, now: datetime) -> None:
    conn.execute(update(nodes).where(nodes.c.name == name).values(stopped_at=now, heartbeat_at=now))


def all_nodes_tx(conn) -> list:
    """Every node row (name, host, pid, heartbeat_at, stopped_at, modems), by name."""
    return conn.execute(select(nodes.c.name, nodes.c.host, nodes.c.pid, nodes.c.heartbeat_at, nodes.c.stopped_at,
                               nodes.c.modems).order_by(nodes.c.name)).all()
