"""Schema migrations (Alembic), run programmatically: `yihu db upgrade` and at gateway start."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from gateway.storage.pool import make_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _in_transaction(url: str, fn) -> None:
    """Run an Alembic command on its own engine, in one transaction."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several nodes starting at once on one database: one migrates, the others wait
                # for its commit and then find the schema at head (held to the transaction's end).
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            fn(_config(conn))
    finally:
        engine.dispose()


MIGRATION_LOCK = 0x79696875_0001          # "yihu" + 1: the advisory lock key of schema migrations


def upgrade(url: str, revision: str = "head") -> None:
    _in_transaction(url, lambda cfg: command.upgrade(cfg, revision))


def downgrade(url: str, revision: str = "base") -> None:
    _in_transaction(url, lambda cfg: command.downgrade(cfg, revision))


def current(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def revision(url: str, message: str) -> None:
    """Developer helper: autogenerate a new migration against a database at head."""
    _in_transaction(url, lambda cfg: command.revision(cfg, message=message, autogenerate=True))
