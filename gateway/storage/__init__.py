"""Storage: schema, migrations and the database thread pool."""
from gateway.storage.pool import Database, default_sqlite_url, is_sqlite, make_engine  # noqa: F401
