"""Alembic environment: the connection is handed in by gateway.storage.migrate."""
from alembic import context

from gateway.storage.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `yihu db upgrade` (gateway.storage.migrate)")

context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
with context.begin_transaction():
    context.run_migrations()
