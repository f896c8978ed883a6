"""The queries for pending holds use the index of pending holds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg.sql
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection

from creditmeter.store import holds
from creditmeter.store.database import Database


@pytest.fixture
def db(migrated_url: str) -> Iterator[Database]:
    database = Database(migrated_url)
    yield database
    database.dispose()


def plan(conn: Connection, sql: str, params: Any) -> str:
    """The plan of a statement as the driver sent it. On PostgreSQL, its generic plan (as
    for a statement prepared and run many times, where a parameter's value is unknown),
    and with reading whole tables ruled out, else cheapest on empty ones."""
    if conn.dialect.name == "sqlite":
        return str(conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all())
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    for n, name in enumerate(names, 1):
        sql = sql.replace(f"%({name})s", f"${n}")
    conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    conn.exec_driver_sql(f"PREPARE pending_holds AS {sql}")
    literals = psycopg.sql.SQL(", ").join(psycopg.sql.Literal(params[n]) for n in names)
    arguments = literals.as_string(conn.connection.dbapi_connection)  # type: ignore[arg-type]
    execute = f"EXECUTE pending_holds({arguments})" if names else "EXECUTE pending_holds"
    try:
        return str(conn.exec_driver_sql(f"EXPLAIN {execute}").all())
    finally:
        conn.exec_driver_sql("DEALLOCATE pending_holds")


def test_pending_holds_are_found_through_their_index(db: Database) -> None:
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        statements.append((sql, params))

    event.listen(db.engine, "before_cursor_execute", seen)
    with db.read() as conn:
        holds.expired_ids(conn, "acme", datetime.now(UTC))
        holds.next_expiry(conn, "acme")
        holds.count_pending(conn, datetime.now(UTC))
    event.remove(db.engine, "before_cursor_execute", seen)

    assert len(statements) == 3
    with db.read() as conn:
        for sql, params in statements:
            assert "ix_holds_pending" in plan(conn, sql, params), sql
