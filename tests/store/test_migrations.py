"""The Alembic migrations build exactly the schema that ``tables.py`` declares."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from creditmeter import CreditMeter
from creditmeter.store import migrate
from creditmeter.store.database import Database, Timeouts
from creditmeter.store.tables import metadata

CREDITMETER_TABLES = frozenset(metadata.tables)


def differences(db: Database, target: sa.MetaData = metadata) -> list[Any]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, target))


def check_constraints(db: Database) -> dict[str, set[str]]:
    inspector = sa.inspect(db.engine)
    return {
        table: {str(c["name"]) for c in inspector.get_check_constraints(table)}
        for table in sorted(CREDITMETER_TABLES)
    }


def declared_check_constraints() -> dict[str, set[str]]:
    return {
        name: {str(c.name) for c in table.constraints if isinstance(c, sa.CheckConstraint)}
        for name, table in metadata.tables.items()
    }


def index_conditions(db: Database) -> dict[str, str]:
    """The conditions of partial indexes, by index name."""
    inspector = sa.inspect(db.engine)
    option = f"{db.engine.dialect.name}_where"
    return {
        # As PostgreSQL prints it back: "((status)::text = 'pending'::text)".
        str(index["name"]): re.sub(r"::\w+|[()]", "", str(index["dialect_options"][option]))
        for table in sorted(CREDITMETER_TABLES)
        for index in inspector.get_indexes(table)
        if option in index.get("dialect_options", {})
    }


def declared_index_conditions(dialect: str) -> dict[str, str]:
    return {
        str(index.name): str(index.dialect_options[dialect]["where"])
        for table in metadata.tables.values()
        for index in table.indexes
        if index.dialect_options[dialect]["where"] is not None
    }


def snapshot(db: Database) -> dict[str, list[tuple[str, str, bool, object]]]:
    """Every creditmeter table's columns: name, type, nullability and default."""
    inspector = sa.inspect(db.engine)
    return {
        table: [
            (c["name"], repr(c["type"]), c["nullable"], c["default"])
            for c in inspector.get_columns(table)
        ]
        for table in sorted(CREDITMETER_TABLES)
    }


def table_names(db: Database) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def alembic_versions(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def test_upgrading_an_empty_database_yields_the_declared_schema(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert table_names(db) == set()
        migrate.upgrade(db)
        assert migrate.current_revision(db) == migrate.head_revision()
        assert table_names(db) == CREDITMETER_TABLES | {"alembic_version"}
        assert differences(db) == []
        assert check_constraints(db) == declared_check_constraints()
        conditions = declared_index_conditions(db.engine.dialect.name)
        assert conditions  # (so that the comparison below compares something)
        assert index_conditions(db) == conditions
    finally:
        db.dispose()


def test_the_comparison_notices_a_schema_that_drifted(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        drifted = sa.MetaData(naming_convention=metadata.naming_convention)
        for table in metadata.tables.values():
            table.to_metadata(drifted)
        drifted.tables["grants"].append_column(sa.Column("note", sa.Text, nullable=True))
        found = differences(db, drifted)
        assert [(d[0], d[2], d[3].name) for d in found] == [("add_column", "grants", "note")]
    finally:
        db.dispose()


def test_upgrading_twice_is_a_no_op(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        before = snapshot(db)
        migrate.upgrade(db)
        config = migrate.alembic_config()
        with db.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        assert alembic_versions(db) == [migrate.head_revision()]
        assert snapshot(db) == before
        assert differences(db) == []
    finally:
        db.dispose()


def test_upgrading_keeps_the_data(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO idempotency_keys"
                    " (owner, key, operation, fingerprint, result, created_at)"
                    " VALUES ('', 'k', 'charge', 'f', '{}', '2026-01-01 00:00:00')"
                )
            )
        migrate.upgrade(db)
        with db.engine.connect() as conn:
            keys = conn.execute(sa.text("SELECT key FROM idempotency_keys")).scalars().all()
        assert keys == ["k"]
    finally:
        db.dispose()


def test_idempotency_keys_stored_before_owners_are_the_operators(database_url: str) -> None:
    """Revision 0009 scopes keys by owner; every key stored before was the operator's."""
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        migrate.downgrade(db, "0008")
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO idempotency_keys (key, operation, fingerprint, result, created_at)"
                    " VALUES ('k', 'charge', 'f', '{}', '2026-01-01 00:00:00')"
                )
            )
        migrate.upgrade(db)
        with db.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT owner, key FROM idempotency_keys")).all()
        assert [tuple(row) for row in rows] == [("", "k")]
        assert differences(db) == []
    finally:
        db.dispose()


def test_sqlite_provider_costs_stored_as_floats_are_kept_as_text(sqlite_url: str) -> None:
    """Revision 0006 builds SQLite's table of usage records again, its provider cost as
    text; the costs stored before keep their value, and going back makes them floats. (The
    usage is recorded at the head revision, whose verbs write tables 0005 has not, and
    taken back to 0005 as a float.)"""
    db = Database(sqlite_url)
    with CreditMeter(sqlite_url) as meter:
        meter.put_feature("call", rates={"calls": 1})
        meter.create_account("acme")
        meter.grant("acme", 10)
        meter.charge("acme", "call", provider_cost=Decimal("0.0125"))
    migrate.downgrade(db, "0005")
    path = sa.make_url(sqlite_url).database
    assert path is not None
    raw = sqlite3.connect(path)
    try:
        stored = "SELECT provider_cost, typeof(provider_cost), credits FROM usage_records"
        assert raw.execute(stored).fetchall() == [(0.0125, "real", 1)]
        migrate.upgrade(db)
        assert raw.execute(stored).fetchall() == [("0.0125", "text", 1)]
        assert differences(db) == []
        migrate.downgrade(db, "0005")
        assert raw.execute(stored).fetchall() == [(0.0125, "real", 1)]
    finally:
        raw.close()
        db.dispose()


def test_downgrade_to_base_leaves_no_creditmeter_tables(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        migrate.downgrade(db, "base")
        assert table_names(db) & CREDITMETER_TABLES == set()
        assert migrate.current_revision(db) is None
        if db.dialect == "postgresql":
            inspector = sa.inspect(db.engine)
            assert inspector.get_sequence_names() == []
        migrate.upgrade(db)
        assert differences(db) == []
    finally:
        db.dispose()


def test_a_migration_waits_for_another_s_beyond_the_lock_timeout(postgresql_url: str) -> None:
    """Processes that start together migrate one at a time, however long the first takes:
    the lock timeout does not cut the wait for the migrations' lock short."""
    db = Database(postgresql_url, timeouts=Timeouts(lock=0.05, statement=0.05))
    other = sa.create_engine(postgresql_url, pool_size=1)
    waiting = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND objid = :key % 4294967296"
    )
    try:
        with other.begin() as holder:
            holder.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": migrate._LOCK_KEY}
            )
            migrating = threading.Thread(target=migrate.upgrade, args=(db,))
            migrating.start()
            deadline = time.monotonic() + 30
            while not holder.execute(waiting, {"key": migrate._LOCK_KEY}).scalar_one():
                assert time.monotonic() < deadline, "the migration did not wait for the lock"
                time.sleep(0.01)
            time.sleep(0.2)  # four times the lock timeout
        migrating.join(timeout=60)
        assert migrate.current_revision(db) == migrate.head_revision()
    finally:
        other.dispose()
        db.dispose()
