"""The hot path's statements, sent through the driver's cursor directly.

SQLAlchemy builds and compiles each of these statements once per dialect, and its types
convert the values both ways (UTC datetimes, JSON), so the SQL and the conversions are the
same as on the ordinary path. What is skipped is the work SQLAlchemy does around every
execution (execution contexts, result objects, its cache lookup): on these statements it
cost more than running them. A driver error is raised as SQLAlchemy's own (an
``IntegrityError`` is still an ``IntegrityError``), and a lost connection is invalidated,
as on the ordinary path. Listeners of ``before_cursor_execute`` still see each statement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

Row = Mapping[Any, Any]
"""A row by column name: one read here, or SQLAlchemy's ``RowMapping``."""
_Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None
    """The parameters' names in order for a positional driver (SQLite), else ``None``."""
    defaults: Mapping[str, Any]
    binds: tuple[tuple[str, _Processor], ...]
    """The parameters whose values a type converts, with its conversion."""
    copy: tuple[str, tuple[str, ...]] | None
    """For an INSERT on PostgreSQL: the ``COPY`` that loads the same rows faster, and its
    columns in order."""
    keys: tuple[str, ...]
    results: tuple[tuple[str, _Processor], ...]
    """The columns whose values a type converts, with its conversion."""

    def parameters(self, given: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        values = {**self.defaults, **given} if self.defaults else dict(given)
        for name, process in self.binds:
            values[name] = process(values[name])
        if self.positions is None:
            return values
        return [values[name] for name in self.positions]

    def values(self, given: Mapping[str, Any], names: Sequence[str]) -> list[Any]:
        converted = self.parameters(given)
        assert isinstance(converted, Mapping)
        return [converted[name] for name in names]

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        row = dict(zip(self.keys, values, strict=True))
        for key, process in self.results:
            row[key] = process(row[key])
        return row


class Statement:
    """A Core statement compiled once per dialect (and, for an INSERT or UPDATE, per set
    of parameter names) and run on the driver's cursor."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, frozenset[str]], _Compiled] = {}

    def compiled(self, dialect: Dialect, names: frozenset[str]) -> _Compiled:
        key = (dialect.name, names)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _compile(self.statement, dialect, names)
        return found


def _compile(statement: ClauseElement, dialect: Dialect, names: frozenset[str]) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=sorted(names))
    assert isinstance(compiled, SQLCompiler)
    processors = cast(Mapping[str, _Processor], compiled._bind_processors)
    defaults = {
        name: bind.effective_value
        for bind, name in compiled.bind_names.items()
        if not bind.required and name not in names
    }
    bound = sorted(set(defaults) | set(names))
    copy = None
    if isinstance(statement, sa.Insert) and dialect.name == "postgresql" and not defaults:
        copy = (f"COPY {statement.table.name} ({', '.join(bound)}) FROM STDIN", tuple(bound))
    return _Compiled(
        sql=compiled.string,
        copy=copy,
        positions=tuple(compiled.positiontup) if compiled.positiontup is not None else None,
        defaults=defaults,
        binds=tuple((name, processors[name]) for name in bound if name in processors),
        keys=tuple(entry.keyname for entry in compiled._result_columns),
        results=tuple(
            (entry.keyname, process)
            for entry in compiled._result_columns
            if (process := entry.type._cached_result_processor(dialect, None)) is not None
        ),
    )


def _execute(conn: Connection, sql: str, parameters: Any, how: str) -> Any:
    """Run ``sql`` on a new cursor of the driver (``how``: ``execute``, ``executemany``
    or ``copy``), its errors raised as SQLAlchemy's; the cursor, to be closed.

    A statement after a ``commit()`` begins the next transaction, as SQLAlchemy's own
    statements do (the driver's autobegin, if any, would be unknown to ``conn``)."""
    if not conn.in_transaction():
        conn.begin()
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    if conn.dispatch.before_cursor_execute:
        many = how != "execute"
        conn.dispatch.before_cursor_execute(conn, cursor, sql, parameters, None, many)
    try:
        if how == "copy":
            with cursor.copy(sql) as copy:
                for row in parameters:
                    copy.write_row(row)
        else:
            getattr(cursor, how)(sql, parameters)
    except conn.dialect.loaded_dbapi.Error as error:
        cursor.close()
        raise translated(conn, error, dbapi_connection, sql, parameters) from error
    return cursor


def translated(
    conn: Connection, error: Any, dbapi_connection: Any, sql: str, parameters: Any
) -> BaseException:
    """A driver's error as SQLAlchemy raises it; ``conn`` invalidated if it was lost."""
    dialect = conn.dialect
    lost = dialect.is_disconnect(error, dbapi_connection, None)
    if lost:
        conn.invalidate(error)
    translated: BaseException = sa.exc.DBAPIError.instance(
        sql,
        parameters,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )
    return translated


def _prepared(conn: Connection, statement: Statement, params: Mapping[str, Any]) -> _Compiled:
    return statement.compiled(conn.dialect, frozenset(params))


def rows(conn: Connection, statement: Statement, params: Mapping[str, Any]) -> list[Row]:
    """The rows a query returns, as dictionaries of converted values."""
    compiled = _prepared(conn, statement, params)
    cursor = _execute(conn, compiled.sql, compiled.parameters(params), "execute")
    try:
        return [compiled.row(values) for values in cursor.fetchall()]
    finally:
        cursor.close()


def first(conn: Connection, statement: Statement, params: Mapping[str, Any]) -> Row | None:
    found = rows(conn, statement, params)
    return found[0] if found else None


def run(conn: Connection, statement: Statement, params: Mapping[str, Any]) -> int:
    """Execute a change; how many rows it matched."""
    compiled = _prepared(conn, statement, params)
    cursor = _execute(conn, compiled.sql, compiled.parameters(params), "execute")
    count: int = cursor.rowcount
    cursor.close()
    return count


COPY_FROM = 16
"""Rows from which an INSERT on PostgreSQL is sent as a ``COPY``: several times faster
for hundreds of rows, a round trip more for a few."""


def run_many(conn: Connection, statement: Statement, many: Sequence[Mapping[str, Any]]) -> int:
    """Execute a change once for each set of parameters (all with the same names), in one
    round trip on PostgreSQL; how many rows they matched in all."""
    if len(many) <= 1:
        return run(conn, statement, many[0]) if many else 0
    compiled = _prepared(conn, statement, many[0])
    if compiled.copy is not None and len(many) >= COPY_FROM:
        sql, columns = compiled.copy
        values = [compiled.values(params, columns) for params in many]
        _execute(conn, sql, values, "copy").close()
        return len(many)
    parameters = [compiled.parameters(params) for params in many]
    cursor = _execute(conn, compiled.sql, parameters, "executemany")
    count: int = cursor.rowcount
    cursor.close()
    return count
