"""Schema migrations, applied programmatically with Alembic."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from creditmeter.store.database import Database

_MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x6372_6564_6974  # "credit": the advisory lock that serializes migrations


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a database already there is left as it is.

    Processes that start together migrate one at a time: PostgreSQL takes an advisory
    lock, SQLite's ``BEGIN IMMEDIATE`` holds the write lock; each looks again under it.
    """
    head = head_revision()
    if revision == "head" and current_revision(db) == head:
        return
    config = alembic_config()
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            # A migration waits for another process's as long as that takes, and its
            # statements (an index built over a large table) are not cut short.
            conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        if revision == "head" and MigrationContext.configure(conn).get_current_revision() == head:
            return
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(db: Database, revision: str) -> None:
    config = alembic_config()
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
