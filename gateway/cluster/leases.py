"""Leases for singletons, in SQL (no Twisted): each runs inside the caller's transaction.

A lease row names its holder and `until`; the holder renews it (until = now + timeout) every
heartbeat.  Once `until` has passed, any node may take it (generation + 1).  The row is read
FOR UPDATE, so two nodes racing for an expired lease are serialised on PostgreSQL and only one
sees it expired; on SQLite (a single node) the same code simply finds it ours.  Times are the
nodes' own clocks: the nodes must keep their clocks in step (NTP), as they do for heartbeats.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.orders.times import utc
from gateway.storage.schema import leases


@dataclass(frozen=True)
class LeaseState:
    name: str
    held: bool                  # this node holds it now, until `until`
    holder: str | None
    until: datetime | None
    generation: int
    taken: bool = False         # this transaction took it (from nobody, another node, or a lapse of ours)


def acquire_tx(conn, name: str, me: str, now: datetime, timeout_s: float) -> LeaseState:
    """Renew the lease if it is ours and current; take it if it is free or expired; otherwise
    report who holds it until when."""
    until = now + timedelta(seconds=timeout_s)
    row = conn.execute(select(leases).where(leases.c.name == name).with_for_update()).first()
    if row is None:
        values = dict(name=name, holder=me, until=until, changed_at=now, generation=1)
        if conn.dialect.name != "postgresql":        # SQLite: one node, one writer
            conn.execute(insert(leases).values(**values))
            return LeaseState(name, True, me, until, 1, taken=True)
        try:
            with conn.begin_nested():      # another node may insert the row at the same moment
                conn.execute(insert(leases).values(**values))
            return LeaseState(name, True, me, until, 1, taken=True)
        except IntegrityError:
            row = conn.execute(select(leases).where(leases.c.name == name).with_for_update()).one()
    row_until = utc(row.until)
    current = row_until is not None and row_until > now
    if row.holder == me and current:
        conn.execute(update(leases).where(leases.c.name == name).values(until=until))
        return LeaseState(name, True, me, until, int(row.generation))
    if row.holder is None or not current:
        gen = int(row.generation) + 1
        conn.execute(update(leases).where(leases.c.name == name).values(holder=me, until=until, changed_at=now,
                                                                        generation=gen))
        return LeaseState(name, True, me, until, gen, taken=True)
    return LeaseState(name, False, row.holder, row_until, int(row.generation))


def release_tx(conn, name: str, me: str, now: datetime) -> bool:
    """A clean stop: the lease expires now, so another node takes it at its next try."""
    return conn.execute(update(leases).where(leases.c.name == name, leases.c.holder == me)
                        .values(until=now)).rowcount == 1


def leases_tx(conn) -> list:
    """Every lease (name, holder, until, changed_at, generation), by name."""
    return conn.execute(select(leases).order_by(leases.c.name)).all()
