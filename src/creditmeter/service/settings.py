"""Settings, with every change kept: who made it, when, and what it changed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from creditmeter.core.settings import (
    Settings,
    apply_changes,
    settings_from_json,
    settings_to_json,
)
from creditmeter.store import settings as store


def current(conn: Connection) -> Settings:
    return versioned(conn)[1]


def versioned(conn: Connection) -> tuple[int, Settings]:
    """The settings in force and their version."""
    version, values = store.current(conn)
    return version, settings_from_json(values)


def change(
    conn: Connection, now: datetime, changes: Mapping[str, object], changed_by: str
) -> Settings:
    version, values = store.current(conn)
    updated = apply_changes(settings_from_json(values), changes)
    new_values = settings_to_json(updated)
    store.append(
        conn,
        version + 1,
        new_values,
        {name: new_values[name] for name in changes},
        changed_by,
        now,
    )
    return updated


def history(conn: Connection) -> list[dict[str, Any]]:
    return store.history(conn)
