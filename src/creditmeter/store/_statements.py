"""The statement cache: the hot path's statements, compiled once and sent through the
driver's cursor. Private to ``store/``: only its repositories call it.

SQLAlchemy builds and compiles each of these statements once per dialect, and its types
convert the values both ways (UTC datetimes, JSON), so the SQL and the conversions are the
same as on the ordinary path. What is skipped is the work SQLAlchemy does around every
execution (execution contexts, result objects, its cache lookup): on these statements it
cost more than running them. A driver error is raised as SQLAlchemy's own (an
``IntegrityError`` is still an ``IntegrityError``), and a lost connection is invalidated,
as on the ordinary path. Listeners of the engine's ``before_cursor_execute`` still see
each statement.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any, TypeAlias, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement, ColumnElement

from creditmeter.store.documents import json_text
from creditmeter.store.errors import ConcurrentUpdate

Row = Mapping[Any, Any]
"""A row by column name: one read here, or SQLAlchemy's ``RowMapping``."""
_Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    in_order: Callable[[Mapping[str, Any]], Sequence[Any]] | None
    """For a positional driver (SQLite): the parameters' values in their order, from
    their values by name; else ``None``."""
    defaults: Mapping[str, Any]
    binds: tuple[tuple[str, _Processor], ...]
    """The parameters whose values a type converts, with its conversion."""
    copy: _Copy | None
    """For an INSERT on PostgreSQL; else ``None``."""
    keys: tuple[str, ...]
    results: tuple[tuple[str, _Processor], ...]
    """The columns whose values a type converts, with its conversion."""
    table: str | None
    """The table an INSERT or UPDATE changes."""

    @cached_property
    def positional(self) -> tuple[str, tuple[str, ...]]:
        """For PostgreSQL: the SQL with ``%s`` for each named parameter, and their names
        in order (a part of a statement that :func:`pipelined` puts together)."""
        names = tuple(_NAMED.findall(self.sql))
        return _NAMED.sub("%s", self.sql), names

    def parts(self, many: Sequence[Mapping[str, Any]], what: str | None) -> Iterator[_Part]:
        """The changes, their parameters converted, as parts of a statement that
        :func:`pipelined` puts together: an INSERT of several rows as one part (its rows
        are inserted in order, so a serial column numbers them in order), else a part for
        each row (a conditional update's returning the row it changed, for the statement
        to count)."""
        sql, names = self.positional
        head, values_clause, row = sql.partition(" VALUES ")
        if sql.startswith("INSERT ") and values_clause and len(many) > 1 and what is None:
            # Without the RETURNING of a serial key that SQLAlchemy adds: nothing reads it.
            row = row.partition(" RETURNING ")[0]
            row, on_conflict, action = row.partition(" ON CONFLICT ")
            rows = ", ".join([row] * len(many))
            values = [v for params in many for v in self.values(params, names)]
            tail = f" ON CONFLICT {action}" if on_conflict else ""
            yield _Part(self.table, f"{head} VALUES {rows}{tail}", values, None)
            return
        if what is not None:
            sql += " RETURNING 1"
        for params in many:
            yield _Part(self.table, sql, self.values(params, names), what)

    def parameters(self, given: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        converted = self.converted(given)
        return converted if self.in_order is None else self.in_order(converted)

    def converted(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The values by name, the defaults of those not given added, each converted by
        its type."""
        values = {**self.defaults, **given} if self.defaults else dict(given)
        for name, process in self.binds:
            values[name] = process(values[name])
        return values

    def values(self, given: Mapping[str, Any], names: Sequence[str]) -> list[Any]:
        converted = self.converted(given)
        return [converted[name] for name in names]

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        row = dict(zip(self.keys, values, strict=True))
        for key, process in self.results:
            row[key] = process(row[key])
        return row


_NAMED = re.compile(r"%\((\w+)\)s")
"""A named parameter in psycopg's SQL."""


@dataclass(frozen=True)
class _Copy:
    """The ``COPY`` that loads the rows of an INSERT faster."""

    sql: str
    columns: tuple[tuple[str, _Processor | None], ...]
    """The columns in order, each with the conversion of its values, if any: its type's,
    but for a JSON document its text, which ``COPY`` reads as the column's type reads
    it (without the wrapper that tells the driver a parameter's type)."""

    def rows(self, many: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        """Each row's values, converted, in the order of the columns."""
        return [
            [
                params[name] if process is None else process(params[name])
                for name, process in self.columns
            ]
            for params in many
        ]


@dataclass(frozen=True)
class _Part:
    """A change as a part of a statement that :func:`pipelined` puts together."""

    table: str | None
    sql: str
    values: list[Any]
    what: str | None
    """For a conditional update: what it changes, named in the error if it misses."""


class _Strings(sa.types.TypeDecorator[list[str]]):
    """A list of strings as one parameter: an array on PostgreSQL, JSON elsewhere."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(sa.Text))
        return dialect.type_descriptor(sa.JSON())


class _OneOf(ColumnElement[Any]):
    inherit_cache = True
    type = sa.types.NullType()  # not Boolean, which SQLite would compare with 1

    def __init__(self, column: ColumnElement[str], name: str) -> None:
        self.column = column
        self.values = sa.bindparam(name, type_=_Strings())


def one_of(column: ColumnElement[str], name: str) -> ColumnElement[Any]:
    """``column`` is one of the strings of the list given as the parameter ``name``, sent as
    one value however long the list (an array on PostgreSQL, a JSON array on SQLite): an
    ``IN (…)`` of a thousand parameters costs far more to build, send and plan."""
    return _OneOf(column, name)


@compiles(_OneOf, "postgresql")
def _one_of_array(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    return (
        f"{compiler.process(element.column, **kw)} = ANY ({compiler.process(element.values, **kw)})"
    )


@compiles(_OneOf)
def _one_of_json(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    values = compiler.process(element.values, **kw)
    return f"{compiler.process(element.column, **kw)} IN (SELECT value FROM json_each({values}))"


T = TypeVar("T")


class _NotIndexed(ColumnElement[Any]):
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


def not_indexed(column: ColumnElement[T]) -> ColumnElement[T]:
    """``column``, in a condition that SQLite's planner is not to look for an index for
    (its unary ``+``): for a query that an index serves by its order, which the planner
    would otherwise trade for a narrower range and a sort. PostgreSQL's planner weighs the
    sort itself: the column as it is."""
    return cast(ColumnElement[T], _NotIndexed(column))


@compiles(_NotIndexed, "sqlite")
def _not_indexed_sqlite(element: _NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.column, **kw)}"


@compiles(_NotIndexed)
def _not_indexed(element: _NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


class Statement:
    """A Core statement compiled once per dialect (and, for an INSERT or UPDATE, per set
    of parameter names) and run on the driver's cursor."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}
        self._changing_one: Statement | None = None

    def compiled(self, dialect: Dialect, names: tuple[str, ...]) -> _Compiled:
        """For the parameters ``names``, in any order (each order remembered apart: a
        caller names them in one order)."""
        key = (dialect.name, names)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _compile(self.statement, dialect, frozenset(names))
        return found

    def changing_one(self) -> Statement:
        """This UPDATE as PostgreSQL runs it for :func:`run_expecting`: the count of rows
        it changed passed to ``creditmeter_changed_one``, which refuses any other than 1
        (the parameter ``what`` names the change in the error)."""
        if self._changing_one is None:
            assert isinstance(self.statement, sa.Update)
            changed = self.statement.returning(sa.literal_column("1")).cte("changed")
            count = sa.select(sa.func.count()).select_from(changed).scalar_subquery()
            checked = sa.func.creditmeter_changed_one(count, sa.bindparam("what", type_=sa.Text))
            self._changing_one = Statement(sa.select(checked))
        return self._changing_one


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
        copy = _copy(statement.table, bound, processors)
    table = statement.table.description if isinstance(statement, sa.Insert | sa.Update) else None
    return _Compiled(
        sql=compiled.string,
        table=table,
        copy=copy,
        in_order=None if compiled.positiontup is None else _in_order(tuple(compiled.positiontup)),
        defaults=defaults,
        binds=tuple((name, processors[name]) for name in bound if name in processors),
        keys=tuple(entry.keyname for entry in compiled._result_columns),
        results=tuple(
            (entry.keyname, process)
            for entry in compiled._result_columns
            if (process := entry.type._cached_result_processor(dialect, None)) is not None
        ),
    )


def _copy(
    table: sa.TableClause, columns: Sequence[str], processors: Mapping[str, _Processor]
) -> _Copy:
    converted: list[tuple[str, _Processor | None]] = []
    for name in columns:
        # (A type of the project's own around JSON converts by its own processor.)
        document = isinstance(table.c[name].type, sa.JSON)
        converted.append((name, json_text if document else processors.get(name)))
    return _Copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN", tuple(converted))


def _in_order(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Sequence[Any]]:
    """The values of ``names`` in order, from values by name."""
    if len(names) == 1:  # itemgetter's one-name form returns the value alone
        [name] = names
        return lambda values: (values[name],)
    return itemgetter(*names) if names else lambda _: ()


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
    listeners = conn.engine.dispatch.before_cursor_execute
    if listeners:
        listeners(conn, cursor, sql, parameters, None, how != "execute")
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


CHANGE_MISSED = "CM001"
"""The SQLSTATE of a conditional change that PostgreSQL refused (migration 0005)."""


def translated(
    conn: Connection, error: Any, dbapi_connection: Any, sql: str, parameters: Any
) -> BaseException:
    """A driver's error as SQLAlchemy raises it (a conditional change the database
    refused, as :class:`ConcurrentUpdate`); ``conn`` invalidated if it was lost."""
    if getattr(error, "sqlstate", None) == CHANGE_MISSED:
        return ConcurrentUpdate(error.diag.message_primary)
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
    return statement.compiled(conn.dialect, tuple(params))


def rows(conn: Connection, statement: Statement, params: Mapping[str, Any]) -> list[Row]:
    """The rows a query returns, as dictionaries of converted values."""
    compiled = _prepared(conn, statement, params)
    _send_held(conn)
    return _fetched(compiled, _execute(conn, compiled.sql, compiled.parameters(params), "execute"))


def _fetched(compiled: _Compiled, cursor: Any) -> list[Row]:
    """The rows of an executed query, converted; its cursor closed."""
    try:
        return [compiled.row(values) for values in cursor.fetchall()]
    finally:
        cursor.close()


Query: TypeAlias = tuple[Statement, Mapping[str, Any]]
"""A query and its parameters."""


def rows_each(conn: Connection, queries: Sequence[Query]) -> list[list[Row]]:
    """The rows of each query, run one after the other: on PostgreSQL sent together and
    answered in one round trip. Each query still runs after the one before it has
    finished, with a snapshot of its own, so it sees what that one waited for (a lock
    taken, and what its holder committed)."""
    if conn.dialect.name != "postgresql" or _PIPELINE in conn.info:
        return [rows(conn, statement, params) for statement, params in queries]
    compiled = [(_prepared(conn, statement, params), params) for statement, params in queries]
    with pipelined(conn):
        cursors = [_execute(conn, c.sql, c.parameters(params), "execute") for c, params in compiled]
    return [_fetched(c, cursor) for (c, _), cursor in zip(compiled, cursors, strict=True)]


def first(conn: Connection, statement: Statement, params: Mapping[str, Any]) -> Row | None:
    found = rows(conn, statement, params)
    return found[0] if found else None


def run(conn: Connection, statement: Statement, params: Mapping[str, Any]) -> None:
    """Execute a change (whose count of rows matters not: see ``run_expecting``)."""
    run_many(conn, statement, [params])


def run_many(conn: Connection, statement: Statement, many: Sequence[Mapping[str, Any]]) -> None:
    """Execute a change once for each set of parameters (all with the same names), in one
    round trip on PostgreSQL."""
    if many and not _held(conn, statement, many, None):
        _changed(conn, statement, many).close()


def run_expecting(
    conn: Connection, statement: Statement, many: Sequence[Mapping[str, Any]], what: str
) -> None:
    """``run_many`` of a conditional update (``statement``), each of whose changes must
    match exactly one row, or else a :class:`ConcurrentUpdate` naming ``what`` is raised:
    another writer changed the row first. On PostgreSQL the database itself refuses a
    change that misses, which undoes the transaction (in a ``pipelined`` block, the error
    comes with a later answer, at the latest at the block's end); on SQLite the counts are
    checked at once."""
    if not many or _held(conn, statement, many, what):
        return
    if conn.dialect.name == "postgresql":
        _changed(conn, statement.changing_one(), [{**p, "what": what} for p in many]).close()
        return
    cursor = _changed(conn, statement, many)
    count: int = cursor.rowcount
    cursor.close()
    if count != len(many):
        raise ConcurrentUpdate(f"{what}: matched {count} rows, not {len(many)}")


COPY_FROM = 16
"""Rows from which an INSERT on PostgreSQL is sent as a ``COPY``: several times faster
for hundreds of rows, a round trip more for a few."""


def _changed(conn: Connection, statement: Statement, many: Sequence[Mapping[str, Any]]) -> Any:
    """The cursor that executed the changes (at least one), to be closed."""
    compiled = _prepared(conn, statement, many[0])
    # COPY cannot be pipelined.
    if compiled.copy is not None and len(many) >= COPY_FROM and _PIPELINE not in conn.info:
        return _execute(conn, compiled.copy.sql, compiled.copy.rows(many), "copy")
    if len(many) == 1:
        return _execute(conn, compiled.sql, compiled.parameters(many[0]), "execute")
    parameters = [compiled.parameters(params) for params in many]
    return _execute(conn, compiled.sql, parameters, "executemany")


_PIPELINE = "creditmeter_pipeline"
"""The key, in a connection's ``info``, of the changes a pipelined block holds back."""


def _held(
    conn: Connection, statement: Statement, many: Sequence[Mapping[str, Any]], what: str | None
) -> bool:
    """Whether the change is held back, to be sent with the other changes of the pipelined
    block it is in as one statement. Before one that cannot join them (it would not fit
    in a statement by itself, or it changes a table that one of them changes, whose rows
    it might see changed), those are sent."""
    held = _held_back(conn)
    if held is None:
        return False
    compiled = _prepared(conn, statement, many[0])
    if compiled.table in {part.table for part in held}:
        _send_held(conn)
    sql, names = compiled.positional
    rows = len(many)
    if rows * (len(names) + 1) >= STATEMENT_PARAMETERS or rows * len(sql) >= STATEMENT_BYTES:
        _send_held(conn)
        return False
    held += compiled.parts(many, what)
    return True


def _held_back(conn: Connection) -> list[_Part] | None:
    """The changes of the pipelined block ``conn`` is in; ``None`` out of one, and always
    on SQLite, whose blocks hold nothing (asked first: a connection's ``info`` is a few
    calls away, and every statement asks)."""
    if conn.dialect.name != "postgresql":
        return None
    held: list[_Part] | None = conn.info.get(_PIPELINE)
    return held


def _send_held(conn: Connection) -> None:
    """Send the changes held back, in order, as few statements as they fit in."""
    held = _held_back(conn)
    if not held:
        return
    together = _WriteBatch()
    for part in held:
        if not together.fits(part):
            together.send(conn)
        together.add(part)
    held.clear()
    together.send(conn)


STATEMENT_BYTES = 4096
STATEMENT_PARAMETERS = 50
"""psycopg remembers how it converted a statement's placeholders only for statements of at
most so many bytes and parameters: a longer one is parsed again each time it runs, which
costs more than sending its parts as statements of their own."""


class _WriteBatch:
    """Changes batched into one statement, each a part of a data-modifying ``WITH``, each
    conditional update's count of rows checked by ``creditmeter_changed_one``. The parts
    share one snapshot: none sees another's rows, which is why two changes of one table
    are never held together; the checks of foreign keys come at the end of the
    statement, when all its rows are there."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.parts: list[str] = []
        self.checks: list[str] = []
        self.values: list[Any] = []
        self.whats: list[str] = []
        self.length = len("WITH  SELECT 1")

    def fits(self, part: _Part) -> bool:
        check = len("creditmeter_changed_one((SELECT count(*) FROM c00000), %s), ")
        return not self.parts or (
            self.length + len(part.sql) + len("c00000 AS (), ") + check <= STATEMENT_BYTES
            and len(self.values) + len(self.whats) + len(part.values) + 1 <= STATEMENT_PARAMETERS
        )

    def add(self, part: _Part) -> None:
        name = f"c{len(self.parts)}"
        self.parts.append(f"{name} AS ({part.sql})")
        self.values += part.values
        self.length += len(self.parts[-1]) + 2
        if part.what is not None:
            self.checks.append(f"creditmeter_changed_one((SELECT count(*) FROM {name}), %s)")
            self.whats.append(part.what)
            self.length += len(self.checks[-1]) + 2

    def send(self, conn: Connection) -> None:
        if not self.parts:
            return
        statement = f"WITH {', '.join(self.parts)} SELECT {', '.join(self.checks) or '1'}"
        _execute(conn, statement, self.values + self.whats, "execute").close()
        self._clear()


@contextmanager
def pipelined(conn: Connection, *, commit: bool = False) -> Iterator[None]:
    """Run this module's changes in the block without waiting for each one's answer, on
    PostgreSQL: they are held back and sent at the end of the block as one statement
    (see :func:`_send_held`), one round trip for all, where an error among them is raised
    (a change sent before the end, see :func:`_held`, may raise with any later answer).
    A read in the block sends the changes held before it and waits for them. SQLAlchemy's
    own executions must not run in the block (they would not see the changes held). A
    block in a block is part of it; on SQLite, where statements do not travel, the block
    changes nothing.

    ``commit``: the transaction is committed at the end of the block, the ``COMMIT`` sent
    with the block's changes and answered in the same round trip (an error among them
    undoes them all: the ``COMMIT`` of a failed transaction is a rollback). A use case's
    last writes are such a block: while it holds its account's lock, each round trip
    saved is time that another request for the account is not kept waiting."""
    if conn.dialect.name != "postgresql":
        yield
        if commit:
            conn.commit()
        return
    if _PIPELINE in conn.info:
        assert not commit, "the COMMIT of a block in a block"
        yield
        return
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    # Kept at hand: a connection lost in the block is invalidated, and asking it for its
    # info then would raise instead of the error that lost it.
    info = conn.info
    info[_PIPELINE] = []
    try:
        with dbapi_connection.pipeline():
            yield
            _send_held(conn)
            if commit:
                dbapi_connection.execute("COMMIT")
    except conn.dialect.loaded_dbapi.Error as error:
        raise translated(conn, error, dbapi_connection, "(pipelined)", ()) from error
    finally:
        info.pop(_PIPELINE, None)
    if commit:
        conn.commit()  # SQLAlchemy's transaction ends; the driver's has ended already
