"""The feedback line's PIN check: which callers have a PIN, and whether what they keyed is it.

The feedback line trusts caller ID (the PSTN gives nothing better); a member with a PIN in the
roster (gateway/directory/pins.py) must also key it.  Reads the roster only; the hash is checked
in the database thread, never on the reactor.
"""
from __future__ import annotations

from sqlalchemy import select
from twisted.internet.defer import Deferred

from gateway.directory.pins import pin_matches
from gateway.storage.schema import member_phones, members


class MemberPins:
    def __init__(self, db, refusals):
        self.db = db
        self.refusals = refusals        # RefusalAudit: wrong PIN twice is audited

    def required(self, e164: str) -> Deferred:
        """Deferred[bool]: does the member with this phone have a PIN?"""
        return self.db.run(lambda conn: _pin_hash(conn, e164) is not None)

    def matches(self, e164: str, keyed: str) -> Deferred:
        """Deferred[bool]: is `keyed` that member's PIN?"""
        return self.db.run(lambda conn: pin_matches(keyed, _pin_hash(conn, e164) or ""))


def _pin_hash(conn, e164: str) -> str | None:
    return conn.execute(select(members.c.pin_hash)
                        .join(member_phones, member_phones.c.member_id == members.c.id)
                        .where(member_phones.c.e164 == e164, members.c.active.is_(True))
                        .limit(1)).scalar()
