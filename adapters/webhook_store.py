"""Webhook subscribers in the database: their URL, own secret (optional), durable cursor and
dead letters.  Every function takes a Connection inside a transaction, so the gateway, the
`yihu webhook` command and the tests share them.  Secrets are stored, never returned for display.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, update

from gateway.cluster.claims import Claimer, skip_locked
from gateway.eventlog import count_range, last_id
from gateway.storage.schema import webhook_dead_letters as DL, webhook_subscribers as S


class SubscriberExists(ValueError):
    pass


@dataclass(frozen=True)
class Subscriber:
    id: int
    url: str
    secret: str | None
    source: str
    cursor: int
    failing_since: datetime | None


def _sub(r) -> Subscriber:
    return Subscriber(r.id, r.url, r.secret, r.source, int(r.cursor), r.failing_since)


def sync_config_tx(conn, urls: list[str], now: datetime) -> tuple[int, int]:
    """Make the config-file subscribers those of `urls`: new ones start at the log's end, those
    no longer listed are removed (subscribers added with the CLI are left alone)."""
    have = {r.url: r for r in conn.execute(select(S.c.url, S.c.source))}
    new = [u for u in dict.fromkeys(urls) if u not in have]
    head = last_id(conn)
    if new:
        conn.execute(insert(S), [dict(url=u, source="config", cursor=head, created_at=now) for u in new])
    gone = [u for u, r in have.items() if r.source == "config" and u not in urls]
    if gone:
        conn.execute(delete(S).where(S.c.url.in_(gone)))
    return len(new), len(gone)


def add_tx(conn, url: str, secret: str | None, now: datetime, from_id: int | None = None) -> Subscriber:
    if conn.execute(select(S.c.id).where(S.c.url == url)).first():
        raise SubscriberExists(url)
    head = last_id(conn)
    if from_id is not None and from_id > head:
        raise ValueError(f"event #{from_id} is not in the log yet (the last is #{head})")
    cursor = head if from_id is None else from_id
    conn.execute(insert(S).values(url=url, secret=secret or None, source="cli", cursor=cursor, created_at=now))
    return _sub(conn.execute(select(S).where(S.c.url == url)).one())


def remove_tx(conn, url: str) -> bool:
    return conn.execute(delete(S).where(S.c.url == url)).rowcount == 1


def load_tx(conn) -> list[Subscriber]:
    return [_sub(r) for r in conn.execute(select(S).order_by(S.c.id))]


def claim_tx(conn, claimer: Claimer, now: datetime) -> tuple[list[Subscriber], int]:
    """The subscribers this node delivers to: its own, plus those free or left by a dead node
    (taken, SKIP LOCKED: one node per subscriber, so its cursor has one writer).  Returns (this
    node's subscribers, how many were taken from a dead node)."""
    q = select(S.c.id, S.c.owner_node).where(claimer.free_or_mine(S.c.owner_node, now),
                                             or_(S.c.owner_node.is_(None), S.c.owner_node != claimer.node))
    take = conn.execute(skip_locked(q, conn, S)).all()
    if take:
        conn.execute(update(S).where(S.c.id.in_([r.id for r in take])).values(owner_node=claimer.node))
    mine = [_sub(r) for r in conn.execute(select(S).where(S.c.owner_node == claimer.node).order_by(S.c.id))]
    return mine, sum(1 for r in take if r.owner_node is not None)


def ack_tx(conn, sub_id: int, cursor: int, now: datetime) -> None:
    """The subscriber acknowledged every event up to `cursor` (never moves back)."""
    conn.execute(update(S).where(S.c.id == sub_id, S.c.cursor < cursor)
                 .values(cursor=cursor, delivered_at=now, failing_since=None, last_error=None))


def failing_tx(conn, sub_id: int, since: datetime, error: str) -> None:
    conn.execute(update(S).where(S.c.id == sub_id).values(failing_since=since, last_error=error[:200]))


def dead_letter_tx(conn, sub_id: int, events, error: str, now: datetime) -> None:
    """Give these events up for this subscriber (kept as dead letters) and move past them."""
    conn.execute(insert(DL), [dict(subscriber_id=sub_id, event_id=e.id, kind=e.kind, at=now, error=error[:200])
                              for e in events])
    conn.execute(update(S).where(S.c.id == sub_id, S.c.cursor < events[-1].id)
                 .values(cursor=events[-1].id, failing_since=None))


def backlog_tx(conn, cursor: int) -> int:
    return count_range(conn, cursor, last_id(conn))


@dataclass(frozen=True)
class SubscriberStatus:
    url: str
    source: str
    signed_by: str          # "own secret" / "webhooks.secret" / "unsigned"
    cursor: int
    behind: int
    dead_letters: int
    delivered_at: datetime | None
    failing_since: datetime | None
    last_error: str | None


def status_tx(conn, config_secret: bool) -> list[SubscriberStatus]:
    head = last_id(conn)
    dead = dict(conn.execute(select(DL.c.subscriber_id, func.count()).group_by(DL.c.subscriber_id)).all())
    out = []
    for r in conn.execute(select(S).order_by(S.c.id)):
        signed = "own secret" if r.secret else ("webhooks.secret" if config_secret else "unsigned")
        out.append(SubscriberStatus(r.url, r.source, signed, int(r.cursor), count_range(conn, r.cursor, head),
                                    dead.get(r.id, 0), r.delivered_at, r.failing_since, r.last_error))
    return out
