"""PostgreSQL seen from another session (tests about what reached the server, and when)."""
from __future__ import annotations

import psycopg

from gateway.cluster.wakeups import psycopg_conninfo


def other_session(url):
    """A psycopg connection of its own (autocommit) to the database at `url` (SQLAlchemy's URL)."""
    return psycopg.connect(psycopg_conninfo(url), autocommit=True)


def written_on_server(conn, url) -> bool:
    """Has `conn`'s transaction written anything on the server yet?  PostgreSQL gives a
    transaction its id at its first write (pg_stat_activity.backend_xid), seen from another
    session, so nothing of the client's own bookkeeping is trusted."""
    pid = conn.connection.driver_connection.info.backend_pid
    with other_session(url) as other:
        return other.execute("SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = %s",
                             (pid,)).fetchone()[0]
