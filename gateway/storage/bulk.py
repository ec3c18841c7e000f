"""Many rows in few statements, inside the caller's transaction (a batch of answers, a claim)."""
from __future__ import annotations

from sqlalchemy import insert, text


def insert_returning_ids(conn, table, rows: list[dict]) -> list[int]:
    """INSERT `rows` (dicts with the same keys) into `table`; their new ids, in order.

    On PostgreSQL the ids are drawn from the table's sequence first and the rows go in one
    executemany (psycopg pipelines it, with one short statement it parses once); a multi-row
    INSERT .. RETURNING instead is a new, long statement for every batch size, which the driver
    parses again each time.  Elsewhere (SQLite): one INSERT .. RETURNING."""
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        ids = conn.execute(text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
                           {"t": table.name, "n": len(rows)}).scalars().all()
        conn.execute(insert(table), [{**r, "id": i} for r, i in zip(rows, ids)])
        return list(ids)
    return list(conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
