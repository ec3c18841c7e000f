"""Shared fixtures.

Database tests run twice: on SQLite and on PostgreSQL.  PostgreSQL is a real component: when
it is unreachable the PostgreSQL tests FAIL (never skip), unless the developer explicitly
runs with YIHU_TEST_POSTGRES=off.  Each test gets its own PostgreSQL schema, so concurrent runs
and parallel developers never see each other's rows.
"""
from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

POSTGRES_URL = os.environ.get("YIHU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
POSTGRES_OFF = os.environ.get("YIHU_TEST_POSTGRES", "").lower() == "off"

BACKENDS = ["sqlite"] + ([] if POSTGRES_OFF else ["postgres"])


def _postgres_schema_url():
    """Create a fresh schema; return (url with search_path, drop function)."""
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:  # noqa: BLE001 - any failure to reach PostgreSQL is a test failure
        admin.dispose()
        pytest.fail(f"PostgreSQL unreachable at {POSTGRES_URL.split('@')[-1]}: {e.__class__.__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''} (set YIHU_TEST_POSTGRES=off to run without it "
                    "on a developer machine; CI never does)", pytrace=False)
    sep = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"

    def drop():
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    return url, drop


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """An empty database URL (no tables) on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'yihu.sqlite'}"
    else:
        url, drop = _postgres_schema_url()
        try:
            yield url
        finally:
            drop()


@pytest.fixture
def migrated_url(db_url):
    """A database URL upgraded to the head migration."""
    from gateway.storage.migrate import upgrade
    upgrade(db_url)
    return db_url


@pytest.fixture
def database(migrated_url):
    """A started gateway Database on the real reactor (pytest-twisted), stopped afterwards."""
    from twisted.internet import reactor

    from gateway.storage import Database
    db = Database(reactor, migrated_url)
    db.start()
    yield db
    db.stop()
