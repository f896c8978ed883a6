"""Alembic environment: runs on the connection that creditmeter hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from creditmeter.store.tables import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through creditmeter.store.migrate")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
