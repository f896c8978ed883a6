"""Settings, with every change kept: who made it, when, and what it changed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from creditmeter.core.audit import Action, Actor
from creditmeter.core.settings import (
    Settings,
    apply_changes,
    settings_from_json,
    settings_to_json,
)
from creditmeter.service import audit
from creditmeter.store import settings as store


def current(conn: Connection) -> Settings:
    return versioned(conn)[1]


def versioned(conn: Connection) -> tuple[int, Settings]:
    """The settings in force and their version."""
    version, values = store.current(conn)
    return version, settings_from_json(values)


def change(
    conn: Connection,
    now: datetime,
    changes: Mapping[str, object],
    changed_by: str,
    actor: Actor,
) -> Settings:
    version, values = store.current(conn)
    updated = apply_changes(settings_from_json(values), changes)
    new_values = settings_to_json(updated)
    changed = {name: new_values[name] for name in changes}
    store.append(conn, version + 1, new_values, changed, changed_by, now)
    details = {"changes": changed}
    audit.record(
        conn, now, actor, Action.SETTINGS_CHANGED, subject_id=str(version + 1), details=details
    )
    return updated


def history(conn: Connection) -> list[dict[str, Any]]:
    return store.history(conn)
