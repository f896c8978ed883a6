"""SQL for settings: an append-only list of versions, the newest in force."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.store.tables import settings_versions

_CURRENT = (
    sa.select(settings_versions.c.version, settings_versions.c["values"])
    .order_by(settings_versions.c.version.desc())
    .limit(1)
)


def current(conn: Connection) -> tuple[int, dict[str, Any]]:
    """The version in force and its values (version 0, no values, before any change)."""
    row = conn.execute(_CURRENT).first()
    return (0, {}) if row is None else (row.version, row[1])


def append(
    conn: Connection,
    version: int,
    values: dict[str, Any],
    changes: dict[str, Any],
    changed_by: str,
    at: datetime,
) -> None:
    """Add a version; the primary key refuses a second writer of the same version."""
    conn.execute(
        settings_versions.insert().values(
            version=version, values=values, changes=changes, changed_by=changed_by, changed_at=at
        )
    )


def history(conn: Connection) -> list[dict[str, Any]]:
    query = sa.select(settings_versions).order_by(settings_versions.c.version.desc())
    return [dict(r) for r in conn.execute(query).mappings()]
