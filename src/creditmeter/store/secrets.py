"""SQL for the database's own random secrets, by name."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.store.tables import secrets

_BY_NAME = sa.select(secrets.c.value).where(secrets.c.name == sa.bindparam("the_name"))


def get(conn: Connection, name: str) -> str | None:
    value: str | None = conn.execute(_BY_NAME, {"the_name": name}).scalar_one_or_none()
    return value


def insert(conn: Connection, name: str, value: str, at: datetime) -> None:
    """Raises ``IntegrityError`` if another process made the secret first."""
    conn.execute(secrets.insert().values(name=name, value=value, created_at=at))
