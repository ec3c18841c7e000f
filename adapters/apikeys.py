"""API keys: who may call the HTTP API, and with which scope.

A key reads `yihu_<key id>_<secret>`.  The key id (public, 12 hex digits) finds the row; the
SHA-256 of the whole key is what is stored and is compared in constant time.  The key itself
is shown once, when it is made, and never stored, logged or listed.  SHA-256 rather than a slow
password hash: the secret is 256 random bits, so there is nothing to guess.

Scopes are ranked: `read` (every GET) < `dispatch` (also orders, hotline marks and call-backs)
< `admin` (also the directory import and anything that changes configuration).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update

from gateway.storage.schema import api_keys, audit_log

SCOPES = ("read", "dispatch", "admin")
RANK = {s: i for i, s in enumerate(SCOPES)}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEY_RE = re.compile(r"^yihu_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")


class ApiKeyError(ValueError):
    """A key cannot be made or revoked; the message says why (never the key)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (the author recorded) and its scope."""
    name: str
    scope: str
    open_access: bool = False        # the embedded default on loopback, no key presented

    @property
    def actor(self) -> str:
        return "open:loopback" if self.open_access else f"api:{self.name}"

    def allows(self, scope: str) -> bool:
        return RANK[self.scope] >= RANK[scope]

    @property
    def sees_full_numbers(self) -> bool:
        return self.allows("dispatch")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> tuple[str, str]:
    """(key id, key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"yihu_{key_id}_{secrets.token_urlsafe(32)}"


def create_key_tx(conn, name: str, scope: str, now: datetime, actor: str) -> str:
    """Make a key; return it (the only time it exists outside the caller's hands)."""
    if not NAME_RE.match(name or ""):
        raise ApiKeyError(f"key name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if scope not in SCOPES:
        raise ApiKeyError(f"scope {scope!r}: one of {', '.join(SCOPES)}")
    old = conn.execute(select(api_keys.c.revoked_at).where(api_keys.c.name == name)).first()
    if old is not None:
        raise ApiKeyError(f"key name {name!r} is taken{' by a revoked key' if old.revoked_at else ''}: "
                        "audit rows name their author by it, so choose another")
    key_id, key = new_key()
    conn.execute(insert(api_keys).values(name=name, key_id=key_id, key_hash=key_hash(key), scope=scope,
                                         created_at=now, created_by=actor[:100]))
    conn.execute(insert(audit_log).values(at=now, actor=actor[:100], action="apikey.created",
                                          subject=f"api key {name}", detail={"scope": scope}))
    return key


def list_keys_tx(conn) -> list[dict]:
    rows = conn.execute(select(api_keys.c.name, api_keys.c.scope, api_keys.c.created_at, api_keys.c.last_used_at,
                               api_keys.c.revoked_at).order_by(api_keys.c.name))
    return [dict(r._mapping) for r in rows]


def revoke_key_tx(conn, name: str, now: datetime, actor: str) -> None:
    n = conn.execute(update(api_keys).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
                     .values(revoked_at=now)).rowcount
    if not n:
        raise ApiKeyError(f"no active API key named {name!r}")
    conn.execute(insert(audit_log).values(at=now, actor=actor[:100], action="apikey.revoked",
                                          subject=f"api key {name}"))


def any_active_key_tx(conn) -> bool:
    return conn.execute(select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)).first() is not None


def verify_key_tx(conn, key: str) -> Principal | None:
    """The key's principal, or None for a malformed, unknown, revoked or wrong key."""
    m = _KEY_RE.match(key)
    if not m:
        return None
    row = conn.execute(select(api_keys.c.name, api_keys.c.scope, api_keys.c.key_hash)
                       .where(api_keys.c.key_id == m.group(1), api_keys.c.revoked_at.is_(None))).first()
    if row is None or not hmac.compare_digest(row.key_hash.encode(), key_hash(key).encode()):
        return None
    return Principal(row.name, row.scope)


def touch_key_tx(conn, name: str, now: datetime) -> None:
    conn.execute(update(api_keys).where(api_keys.c.name == name).values(last_used_at=now))
