"""A PDU read again from the SIM (a crash before AT+CMGD) is recognised by its indexed digest, also
for SMS kept before the digest existed (the migration fills it in)."""
import hashlib
from datetime import datetime, timezone

import pytest_twisted
from sqlalchemy import insert, select
from twisted.internet import reactor

from gateway.storage import Database
from gateway.storage.migrate import downgrade, upgrade
from gateway.storage.schema import inbound_raw
from sms.store import SqlStore

PDU = b"07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"


def store_one(store, raw, source="/dev/ttyUSB0", channel="sms"):
    return store.store_inbound(reactor.seconds(), channel=channel, source=source, sender="+31641600986",
                               raw=raw, text="How are you?", state="new")


@pytest_twisted.inlineCallbacks
def test_the_same_pdu_from_the_same_modem_is_kept_once(database):
    store = SqlStore(database)
    first, dup = yield store_one(store, PDU)
    assert dup is None
    again, dup = yield store_one(store, PDU)
    assert (again, dup) == (first, first)
    other_modem, dup = yield store_one(store, PDU, source="/dev/ttyUSB1")
    assert dup is None and other_modem != first
    other_pdu, dup = yield store_one(store, PDU[:-2] + b"00")
    assert dup is None
    digest = yield database.run(lambda c: c.execute(select(inbound_raw.c.raw_sha256)
                                                    .where(inbound_raw.c.id == first)).scalar())
    assert digest == hashlib.sha256(PDU).hexdigest()


def old_row_tx(conn):
    # Only the columns the schema before the digest had.
    return conn.execute(insert(inbound_raw).values(
        channel="sms", source="/dev/ttyUSB0", sender="+31641600986", raw=PDU, text="How are you?",
        state="parsed", received_at=datetime.now(timezone.utc))).inserted_primary_key[0]


@pytest_twisted.inlineCallbacks
def test_sms_kept_before_the_digest_existed_are_still_recognised(migrated_url):
    downgrade(migrated_url, "0009-1")          # the schema before the digest column
    db = Database(reactor, migrated_url)
    db.start()
    try:
        old = yield db.run(old_row_tx)
    finally:
        db.stop()
    upgrade(migrated_url)
    db = Database(reactor, migrated_url)
    db.start()
    try:
        again, dup = yield store_one(SqlStore(db), PDU)
        assert (again, dup) == (old, old)
    finally:
        db.stop()
