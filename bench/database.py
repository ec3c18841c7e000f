"""The database a bench runs on: a fresh PostgreSQL schema by default (production's database),
or a SQLite file with --sqlite; migrated to head either way, dropped afterwards."""
from __future__ import annotations

import contextlib
import os
import uuid

PG_URL = os.environ.get("YIHU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def add_arguments(ap) -> None:
    ap.add_argument("--url", default=PG_URL, help="PostgreSQL server (a schema of its own is made and dropped)")
    ap.add_argument("--sqlite", action="store_true", help="a SQLite file instead (the product's settings)")


def fresh_schema(base_url: str):
    """A schema of its own on PostgreSQL: (url with search_path, drop())."""
    from sqlalchemy import create_engine, text
    schema = "bench_" + uuid.uuid4().hex[:10]
    admin = create_engine(base_url)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base_url else "?"

    def drop():
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    return f"{base_url}{sep}options=-csearch_path%3D{schema}", drop


@contextlib.contextmanager
def bench_database(args, tmp: str):
    """Yields (url, label): migrated to head; a PostgreSQL schema is dropped on the way out."""
    from gateway.storage.migrate import upgrade
    if args.sqlite:
        url, drop, label = f"sqlite:///{tmp}/yihu.sqlite", (lambda: None), "SQLite file"
    else:
        url, drop = fresh_schema(args.url)
        label = "PostgreSQL"
    try:
        upgrade(url)
        yield url, label
    finally:
        drop()


def advance_sequences(conn, tables) -> None:
    """After bulk inserts with explicit ids: PostgreSQL's sequences follow, so that rows the
    product inserts later get fresh ids."""
    from sqlalchemy import func, select, text
    if conn.dialect.name != "postgresql":
        return
    for t in tables:
        top = conn.execute(select(func.max(t.c.id))).scalar() or 0
        conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v, true)"), {"t": t.name, "v": max(top, 1)})


def analyze(db, tables) -> None:
    """After the fill: the planner's statistics of the tables filled, as autovacuum keeps them on a
    database in service (a table filled a moment ago looks empty to the planner until then).
    Tables left empty are not analyzed: "analyzed empty" would make the planner scan them whole
    once the run has filled them, which no database in service does."""
    from sqlalchemy import text
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for t in tables:
            conn.execute(text(f'ANALYZE "{t.name}"'))
