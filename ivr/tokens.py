"""One-time order-call tokens: only a call the gateway placed may answer for a team.

The order caller mints a token for every Originate (channel variable YIHU_TOKEN, beside
YIHU_DELIVERY and YIHU_PHONE); the order flow reads the three back with GET VARIABLE and checks
the token before it reads the order or takes a key.  A token is

    <expires (unix seconds)>.<nonce>.<HMAC-SHA256(key, "yihu-call-v1|delivery|phone|expires|nonce")>

in characters Asterisk passes through an Originate `Variable:` header unchanged (no comma, no
`=`, no quote).  The nonce keeps two attempts of one delivery in the same second apart.  Pure
functions here; `ivr/token_gate.py` adds the database (used tokens, audit).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKEN_VARIABLE = "YIHU_TOKEN"
_SHAPE = re.compile(r"^(\d{1,12})\.([0-9a-f]{16})\.([0-9a-f]{64})$")
MIN_SECRET_BYTES = 16


def _mac(key: bytes, delivery_id, phone: str, expires: int, nonce: str) -> str:
    msg = f"yihu-call-v1|{'' if delivery_id is None else delivery_id}|{phone or ''}|{expires}|{nonce}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def mint_call_token(key: bytes, delivery_id, phone: str, expires: int, nonce: str | None = None) -> str:
    """The token for one order-call attempt; `expires` in unix seconds."""
    nonce = nonce or secrets.token_hex(8)
    return f"{int(expires)}.{nonce}.{_mac(key, delivery_id, phone, int(expires), nonce)}"


@dataclass(frozen=True)
class TokenCheck:
    """What the token says, or why it is refused (reason: missing / malformed / forged / expired)."""
    ok: bool
    reason: str = ""
    expires: int | None = None


def check_call_token(key: bytes, token: str | None, delivery_id, phone: str | None, now: float) -> TokenCheck:
    """Checks signature and expiry; whether it was used already is the gate's (database) part."""
    if not token:
        return TokenCheck(False, "missing")
    m = _SHAPE.match(token)
    if m is None:
        return TokenCheck(False, "malformed")
    expires, nonce, mac = int(m.group(1)), m.group(2), m.group(3)
    if not hmac.compare_digest(mac, _mac(key, delivery_id, phone or "", expires, nonce)):
        return TokenCheck(False, "forged", expires)
    if now > expires:
        return TokenCheck(False, "expired", expires)
    return TokenCheck(True, "", expires)


def token_digest(token: str) -> str:
    """What the used-token record keeps (the token itself is not stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def load_or_create_secret(configured: str, path: Path) -> bytes:
    """The HMAC key: `ivr.token_secret` when set, else the one in `path`, made on first start.

    Kept in a file (mode 0600, in the data directory) rather than made per run: an order call
    placed just before a restart must still verify after it.  Not in the database, so a dump or
    a read-only database account does not give away the power to forge answers.
    """
    if configured:
        return configured.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="ascii").strip()
        if len(value) < 2 * MIN_SECRET_BYTES:
            raise ValueError(f"order-call token key file {path} is too short; delete it to make a new one")
        return value.encode()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        value = secrets.token_hex(32)
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    return value.encode()


class CallTokens:
    """The gateway's key, for minting (order caller) and checking (order flow)."""

    def __init__(self, key: bytes, grace_s: float = 120.0):
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(f"order-call token key must be at least {MIN_SECRET_BYTES} bytes")
        self._key = key
        self.grace_s = grace_s

    def __repr__(self):                       # never the key, in a log line or a traceback
        return f"CallTokens(grace_s={self.grace_s})"

    def variables(self, delivery_id, phone: str, now: float, ring_s: float) -> dict[str, str]:
        """The Originate variables that carry the token: valid while the phone rings, plus grace
        for the PBX to answer and connect the FastAGI session."""
        return {TOKEN_VARIABLE: mint_call_token(self._key, delivery_id, phone, int(now + ring_s + self.grace_s) + 1)}

    def check(self, token: str | None, delivery_id, phone: str | None, now: float) -> TokenCheck:
        return check_call_token(self._key, token, delivery_id, phone, now)
