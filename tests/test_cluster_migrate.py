"""Several nodes starting at once on an empty PostgreSQL schema: each migrates at start
(`yihu run`), and none fails on the others' half-made tables."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, text


@pytest.fixture
def pg_url():
    from tests.conftest import POSTGRES_OFF, _postgres_schema_url
    if POSTGRES_OFF:
        pytest.skip("YIHU_TEST_POSTGRES=off: this is about PostgreSQL")
    url, drop = _postgres_schema_url()
    try:
        yield url
    finally:
        drop()


def test_four_nodes_migrating_one_empty_schema_at_once_all_succeed(pg_url):
    from gateway.storage.migrate import head, upgrade
    errors, go = [], threading.Barrier(4)

    def node():
        go.wait()
        try:
            upgrade(pg_url)
        except Exception as e:  # noqa: BLE001 - what a node's start would die of
            errors.append(f"{e.__class__.__name__}: {str(e).splitlines()[0]}")
    threads = [threading.Thread(target=node) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head()]
    engine.dispose()
