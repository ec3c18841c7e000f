"""Idempotency-Key for order creation: scoped to the API key, kept 24 h, bound to the request.

The row is inserted in the same transaction as the order, before it: a twin request that runs
at the same moment (another thread or process) waits on the unique (key, Idempotency-Key) and
then fails, and its retry finds the order.  The same key with another body is refused, so a
client bug cannot silently turn a new order into an old one.
"""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from sqlalchemy import delete, insert, select, update

from gateway.orders.store import create_order_tx, existing_order_tx
from gateway.storage.schema import api_idempotency

KEPT = timedelta(hours=24)


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used, within 24 h, for a different request."""


def request_hash(method: str, path: str, body) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def idempotent_create_tx(key_name: str, idem_key: str, req_hash: str):
    """A create_tx for OrderService.send that honours the key."""
    def create(conn, req, now, cfg, rng):
        conn.execute(delete(api_idempotency).where(api_idempotency.c.created_at < now - KEPT))
        row = conn.execute(select(api_idempotency.c.request_hash, api_idempotency.c.order_id).where(
            api_idempotency.c.key_name == key_name, api_idempotency.c.idem_key == idem_key)).first()
        if row is not None:
            if row.request_hash != req_hash:
                raise IdempotencyConflict(idem_key)
            return existing_order_tx(conn, row.order_id)
        rid = conn.execute(insert(api_idempotency).values(
            key_name=key_name, idem_key=idem_key, request_hash=req_hash, created_at=now)).inserted_primary_key[0]
        created = create_order_tx(conn, req, now, cfg, rng)
        conn.execute(update(api_idempotency).where(api_idempotency.c.id == rid).values(order_id=created.order_id))
        return created
    return create
