"""Migrations go from empty to head and back to base on SQLite and PostgreSQL, and head matches
the schema the code uses."""
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from gateway.storage import make_engine
from gateway.storage.migrate import current, downgrade, head, upgrade
from gateway.storage.schema import metadata

TABLES = {"teams", "members", "member_phones", "duty_roster", "hotline_calls", "orders", "order_teams",
          "deliveries", "sms_messages", "sms_segments", "inbound_raw", "feedback", "escalation_steps",
          "audit_log"}


def tables(url):
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_to_head_then_downgrade_to_base(db_url):
    assert tables(db_url) == set()
    upgrade(db_url)
    assert current(db_url) == head()
    assert TABLES <= tables(db_url)
    downgrade(db_url)
    assert current(db_url) is None
    assert tables(db_url) == set()
    upgrade(db_url)          # and up again: downgrade left nothing behind that blocks it
    assert current(db_url) == head()


def test_head_matches_the_schema_in_code(migrated_url):
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, metadata)
    finally:
        engine.dispose()
    assert diff == [], f"migrations and gateway/storage/schema.py disagree: {diff}"
