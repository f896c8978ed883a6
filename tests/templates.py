"""Migrated databases for tests, made from a template migrated once per session.

Migrating an empty database with Alembic, per test, costs more than most tests do. So each
engine's template is migrated once, by ``creditmeter.store.migrate.upgrade`` as
``CreditMeter`` does, and a test gets a copy of it:

- SQLite: the template is a file, copied per test (its engine closed first, so that no
  ``-wal`` or ``-shm`` file is left beside it).
- PostgreSQL: what the migration of the template schema sent the server is recorded (every
  statement but the queries: the DDL, and the rows it inserted, ``alembic_version``'s
  among them) and sent again, in one transaction, into each test's new schema. The
  statements name no schema, so they land in the one ``search_path`` names; that the copy
  is the template (tables, columns, constraints, indexes, sequences and rows) is checked
  once, when the template is made.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from creditmeter.store.database import Database
from creditmeter.store.migrate import upgrade

QUERIES = ("SELECT", "SHOW")
"""Statements of the migration that are not replayed: they only read (reflection, the
revision of the database, the advisory lock that serializes migrations)."""


@dataclass(frozen=True)
class Statement:
    """One statement as SQLAlchemy handed it to the driver."""

    sql: str
    parameters: Any
    many: bool

    def run(self, cursor: Any) -> None:
        if self.many:
            cursor.executemany(self.sql, self.parameters)
        else:
            cursor.execute(self.sql, self.parameters)


# SQLite.


def migrate_sqlite_template(path: Path) -> Path:
    """A SQLite file at ``path``, migrated, with its engine closed and no side files."""
    db = Database(f"sqlite:///{path}")
    try:
        upgrade(db)
    finally:
        db.dispose()  # closing its last connection checkpoints the WAL and removes it
    side_files = sorted(p.name for p in path.parent.iterdir() if p != path)
    if side_files:
        raise RuntimeError(f"the SQLite template left {side_files} beside it")
    return path


def copy_sqlite_template(template: Path, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


# PostgreSQL.


def new_schema_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class PostgresqlTemplate:
    """The statements that migrate an empty schema, and the engine that sends them."""

    admin: sa.Engine
    statements: tuple[Statement, ...]


def create_postgresql_schema(
    admin: sa.Engine, statements: Sequence[Statement] = (), *, prefix: str = "t"
) -> str:
    """A new schema, made by ``statements`` in one transaction (nothing: empty)."""
    schema = new_schema_name(prefix)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        if statements:
            conn.exec_driver_sql(f"SET LOCAL search_path TO {schema}")
            cursor = conn.connection.cursor()
            try:
                for statement in statements:
                    statement.run(cursor)
            finally:
                cursor.close()
    return schema


def drop_postgresql_schema(admin: sa.Engine, schema: str) -> None:
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def postgresql_schema(
    admin: sa.Engine, statements: Sequence[Statement] = (), *, prefix: str = "t"
) -> Iterator[str]:
    """A new schema, made by ``statements`` (nothing: empty), dropped afterwards."""
    schema = create_postgresql_schema(admin, statements, prefix=prefix)
    try:
        yield schema
    finally:
        drop_postgresql_schema(admin, schema)


def record_migration(url: str, schema: str) -> tuple[Statement, ...]:
    """Migrate the empty schema ``schema`` at ``url``; what it sent, but its queries."""
    db = Database(url)
    sent: list[Statement] = []

    def record(
        _conn: sa.Connection,
        _cursor: Any,
        statement: str,
        parameters: Any,
        _context: Any,
        executemany: bool,
    ) -> None:
        sent.append(Statement(statement, parameters, executemany))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        upgrade(db)
    finally:
        db.dispose()
    statements = tuple(s for s in sent if not s.sql.lstrip().upper().startswith(QUERIES))
    named = [s.sql for s in statements if schema in s.sql]
    if named:
        raise RuntimeError(f"the migration named its schema {schema}: {named}")
    return statements


def describe_schema(admin: sa.Engine, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a migration made in ``schema``, its name taken out of what names it."""
    catalog = {
        "columns": """
            SELECT table_name, column_name, ordinal_position, data_type,
                   character_maximum_length, numeric_precision, is_nullable, column_default
            FROM information_schema.columns WHERE table_schema = :schema ORDER BY 1, 3""",
        "constraints": """
            SELECT cl.relname, con.conname, con.contype, pg_get_constraintdef(con.oid)
            FROM pg_constraint con
            JOIN pg_class cl ON cl.oid = con.conrelid
            JOIN pg_namespace ns ON ns.oid = con.connamespace
            WHERE ns.nspname = :schema ORDER BY 1, 2""",
        "indexes": """
            SELECT tablename, indexname, indexdef
            FROM pg_indexes WHERE schemaname = :schema ORDER BY 1, 2""",
        "relations": """
            SELECT cl.relname, cl.relkind
            FROM pg_class cl JOIN pg_namespace ns ON ns.oid = cl.relnamespace
            WHERE ns.nspname = :schema ORDER BY 1""",
        "sequences": """
            SELECT sequence_name, data_type, start_value, minimum_value, maximum_value, increment
            FROM information_schema.sequences WHERE sequence_schema = :schema ORDER BY 1""",
        "other objects": """
            SELECT 'function', proname FROM pg_proc p
            JOIN pg_namespace ns ON ns.oid = p.pronamespace WHERE ns.nspname = :schema
            UNION ALL
            SELECT 'type', typname FROM pg_type t
            JOIN pg_namespace ns ON ns.oid = t.typnamespace
            WHERE ns.nspname = :schema AND t.typtype <> 'c' AND t.typelem = 0
            UNION ALL
            SELECT 'trigger', tgname FROM pg_trigger tg
            JOIN pg_class cl ON cl.oid = tg.tgrelid
            JOIN pg_namespace ns ON ns.oid = cl.relnamespace
            WHERE ns.nspname = :schema AND NOT tg.tgisinternal
            ORDER BY 1, 2""",
    }
    described: dict[str, list[tuple[Any, ...]]] = {}
    with admin.connect() as conn:
        for what, query in catalog.items():
            rows = conn.execute(sa.text(query), {"schema": schema})
            described[what] = [
                tuple(v.replace(f"{schema}.", "") if isinstance(v, str) else v for v in row)
                for row in rows
            ]
        tables = [name for name, kind in described["relations"] if kind in ("r", "p")]
        for table in tables:
            rows = conn.exec_driver_sql(f'SELECT * FROM {schema}."{table}" ORDER BY 1')
            described[f"rows of {table}"] = [tuple(row) for row in rows]
    return described


def check_replay(admin: sa.Engine, template: str, statements: Sequence[Statement]) -> None:
    """The statements make a schema that is the template, but for its name."""
    expected = describe_schema(admin, template)
    with postgresql_schema(admin, statements, prefix="check") as copy:
        replayed = describe_schema(admin, copy)
    if replayed != expected:
        differ = sorted(
            k for k in expected.keys() | replayed.keys() if expected.get(k) != replayed.get(k)
        )
        raise RuntimeError(f"replaying the migration does not make the template: {differ} differ")
