"""The order flow's gate: a session goes on only with a valid token used for the first time.

Signature and expiry are checked in memory (ivr/tokens.py); "first time" is a row in
`call_tokens_used`, committed before the order is read, so a replay is refused after a restart
too (two sessions racing with one token: the unique index lets one through).  Every refusal is
logged naming the call, counted and audited (ivr/refusals.py); nothing is recorded for the team.

A used token's row matters only while the token could still verify: past its expiry the signature
check refuses it ("expired") before the row is looked at.  `UsedTokenSweep` deletes the rows a
week past expiry (kept that long for whoever looks into a call), so the table stays the size of
a week of calls.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from twisted.internet import task
from twisted.logger import Logger

from gateway.storage.bulk import among_named, built_once
from gateway.storage.group import GroupCommit
from gateway.storage.schema import call_tokens_used
from ivr.tokens import CallTokens, token_digest

log = Logger()


class CallTokenGate:
    """db: the gateway's Database, or None (drills: used tokens remembered in memory)."""

    def __init__(self, reactor, db, tokens: CallTokens, refusals):
        self.reactor = reactor
        self.db = db
        self.tokens = tokens
        self.refusals = refusals
        self._used: set[str] = set()
        # Hundreds of calls answered within seconds: their tokens' first uses committed together
        # (each session goes on only after the commit that holds its own).
        self._group = GroupCommit(db, "call tokens") if db is not None else None

    async def admit(self, *, call_id: str, order_code: str, token: str | None, delivery: str | None,
                    phone: str | None, peer: str = "", at: float | None = None) -> bool:
        """at: when the session began (a spooled answer's call start); default now."""
        now = self.reactor.seconds()
        check = self.tokens.check(token, delivery, phone, now if at is None else at)
        reason = check.reason
        if check.ok and not await self._first_use(token, delivery, phone, check.expires, now, call_id):
            reason = "used"
        if not reason:
            return True
        log.warn("order call {call_id} from {peer}: order {code} delivery {delivery}: call token {reason}; "
                 "refused, nothing recorded", call_id=call_id, peer=peer or "?", code=order_code,
                 delivery=delivery or "?", reason=reason)
        await self.refusals.refused(
            f"call_token_{reason}", f"call:{call_id}"[:100], f"order {order_code} delivery {delivery or '?'}",
            {"call_id": call_id, "order_code": order_code, "delivery": (delivery or "")[:20],
             "phone": (phone or "")[:40], "peer": peer, "expires": check.expires})
        return False

    async def _first_use(self, token, delivery, phone, expires, now, call_id) -> bool:
        digest = token_digest(token)
        if self.db is None:
            fresh = digest not in self._used
            self._used.add(digest)
            return fresh
        row = dict(token_sha256=digest, delivery_id=int(delivery) if (delivery or "").isdigit() else None,
                   phone=(phone or "")[:40], expires_at=_utc(expires), used_at=_utc(now), call_id=call_id[:200])
        try:
            return await self._group.run(_use_token, row)
        except IntegrityError:          # the same token in a session at the same moment
            return False


def _use_token(conn, row) -> bool:
    used = conn.execute(select(call_tokens_used.c.id)
                        .where(call_tokens_used.c.token_sha256 == row["token_sha256"])).first()
    if used is not None:
        return False
    conn.execute(insert(call_tokens_used).values(**row))
    return True


def _use_tokens(conn, units) -> list[bool]:
    """_use_token for a group commit's batch [(row,)]: one look-up and one insert for all; a token
    twice in the batch is fresh only the first time."""
    rows = [r for (r,) in units]
    used = set(conn.execute(built_once(conn, _used_among),
                            {"tokens": sorted({r["token_sha256"] for r in rows})}).scalars())
    fresh = []
    for r in rows:
        fresh.append(r["token_sha256"] not in used)
        used.add(r["token_sha256"])
    new = [r for r, f in zip(rows, fresh) if f]
    if new:
        conn.execute(insert(call_tokens_used), new)
    return fresh


_use_token.many = _use_tokens


def _used_among(conn):
    return select(call_tokens_used.c.token_sha256).where(among_named(conn, call_tokens_used.c.token_sha256, "tokens"))


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class UsedTokenSweep:
    """Deletes used call tokens `keep` past their expiry, every `interval_s` on the injected clock
    (run on one node at a time: the gateway holds it by a lease)."""

    def __init__(self, clock, db, keep: timedelta = timedelta(days=7), interval_s: float = 86400.0):
        self.clock, self.db, self.keep, self.interval_s = clock, db, keep, interval_s
        self._loop = task.LoopingCall(self.sweep)
        self._loop.clock = clock

    def start(self):
        self._loop.start(self.interval_s, now=True)

    def stop(self):
        if self._loop.running:
            self._loop.stop()

    def sweep(self):
        before = _utc(self.clock.seconds()) - self.keep

        def swept(n):
            if n:
                log.info("call tokens: {n} used token(s) expired before {before} deleted", n=n,
                         before=before.isoformat(timespec="seconds"))
            return n

        def failed(f):
            # The rows wait for the next sweep; nothing depends on them being gone.
            log.error("call tokens: sweep of expired used tokens failed ({err}); next sweep tries again",
                      err=f.getErrorMessage())
        return self.db.run(prune_used_tokens_tx, before).addCallbacks(swept, failed)


def prune_used_tokens_tx(conn, before: datetime) -> int:
    """Delete the used tokens that expired before `before`; returns how many."""
    return conn.execute(delete(call_tokens_used).where(call_tokens_used.c.expires_at < before)).rowcount
