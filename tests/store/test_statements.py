"""Statements sent through the driver directly read and write what SQLAlchemy would."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

from creditmeter.store import _statements
from creditmeter.store.database import Database
from creditmeter.store.errors import ConcurrentUpdate
from creditmeter.store.tables import feature_versions, features, idempotency_keys
from tests.conftest import POSTGRES_URL

AT = datetime(2026, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)

INSERT = _statements.Statement(idempotency_keys.insert())
SELECT_KEY = sa.select(idempotency_keys).where(idempotency_keys.c.key == sa.bindparam("the_key"))
FIND = _statements.Statement(SELECT_KEY)
UPDATE_KEY = (
    idempotency_keys.update()
    .where(idempotency_keys.c.key == sa.bindparam("the_key"))
    .values(operation=sa.bindparam("new"))
)
RENAME = _statements.Statement(UPDATE_KEY)


@pytest.fixture
def db(migrated_url: str) -> Iterator[Database]:
    database = Database(migrated_url)
    yield database
    database.dispose()


def key(n: int, **changes: Any) -> dict[str, Any]:
    row = {
        "owner": "",
        "key": f"k{n}",
        "operation": "charge",
        "fingerprint": "f" * 64,
        "result": {"credits": n, "nested": {"list": [1, "two"]}},
        "created_at": AT + timedelta(seconds=n),
    }
    return {**row, **changes}


def test_rows_come_back_as_sqlalchemy_reads_them(db: Database) -> None:
    with db.write() as conn:
        _statements.run(conn, INSERT, key(1))
    with db.read() as conn:
        ours = _statements.first(conn, FIND, {"the_key": "k1"})
        theirs = conn.execute(SELECT_KEY, {"the_key": "k1"}).mappings().one()
    assert ours == dict(theirs)
    assert ours is not None
    assert ours["created_at"] == AT + timedelta(seconds=1)  # aware UTC, microseconds kept
    assert ours["result"] == {"credits": 1, "nested": {"list": [1, "two"]}}


def test_a_missing_row_is_none(db: Database) -> None:
    with db.read() as conn:
        assert _statements.first(conn, FIND, {"the_key": "nothing"}) is None
        assert _statements.rows(conn, FIND, {"the_key": "nothing"}) == []


@pytest.mark.parametrize("count", [3, _statements.COPY_FROM, 250])
def test_many_rows_are_written_in_one_call(db: Database, count: int) -> None:
    # From COPY_FROM rows on, PostgreSQL loads them with COPY.
    with db.write() as conn:
        _statements.run_many(conn, INSERT, [key(n) for n in range(count)])
    with db.read() as conn:
        stored = conn.execute(sa.select(idempotency_keys).order_by("created_at")).mappings()
        assert [dict(row) for row in stored] == [key(n) for n in range(count)]


DOCUMENTS: list[Any] = [
    {"text": 'a tab\there, a line\nbreak, a back\\slash, "quotes", ünïcødé, 🙂, \\N'},
    {"beyond 64 bits": 2**70, "below": -(2**65), "fraction": 2.5},
    [1, True, None, {"nested": [], "empty": {}}],
    "a string alone",
    None,
]


def test_json_documents_read_back_alike_from_one_row_and_from_many(db: Database) -> None:
    # Many rows go by COPY on PostgreSQL, each document as its text; one row's, as a
    # parameter the driver is told is JSON.
    alone = [key(n, result=d) for n, d in enumerate(DOCUMENTS)]
    many = [
        key(100 + n, result=DOCUMENTS[n % len(DOCUMENTS)]) for n in range(_statements.COPY_FROM)
    ]
    with db.write() as conn:
        for row in alone:
            _statements.run(conn, INSERT, row)
        _statements.run_many(conn, INSERT, many)
    with db.read() as conn:
        stored = conn.execute(sa.select(idempotency_keys.c.key, idempotency_keys.c.result))
        results = {row.key: row.result for row in stored}
    assert [results[row["key"]] for row in alone] == DOCUMENTS
    assert [results[row["key"]] for row in many] == [row["result"] for row in many]


def rename(the_key: str) -> dict[str, str]:
    return {"the_key": the_key, "new": "settle"}


def stored_keys(db: Database) -> dict[str, str]:
    with db.read() as conn:
        query = sa.select(idempotency_keys.c.key, idempotency_keys.c.operation)
        return {row.key: row.operation for row in conn.execute(query)}


def test_a_conditional_change_that_misses_is_a_concurrent_update(db: Database) -> None:
    with db.write() as conn:
        _statements.run_many(conn, INSERT, [key(n) for n in range(3)])
        _statements.run_expecting(conn, RENAME, [rename("k0"), rename("k1")], "renaming")
        _statements.run_expecting(conn, RENAME, [], "renaming nothing")
    with pytest.raises(ConcurrentUpdate, match="renaming: matched"), db.write() as conn:
        _statements.run_expecting(conn, RENAME, [rename("k2"), rename("absent")], "renaming")
    assert stored_keys(db) == {"k0": "settle", "k1": "settle", "k2": "charge"}


def test_pipelined_changes_are_checked_by_the_end_of_the_block(db: Database) -> None:
    # On PostgreSQL the database refuses the change, and the error arrives with a later
    # answer, at the latest at the end of the block; on SQLite, at once.
    reached: list[str] = []

    def rename_a_missing_key() -> None:
        with db.write() as conn, _statements.pipelined(conn):
            _statements.run(conn, INSERT, key(1))
            _statements.run_expecting(conn, RENAME, [rename("absent")], "renaming")
            _statements.run_many(conn, INSERT, [key(n + 2) for n in range(_statements.COPY_FROM)])
            reached.append("the end of the block")

    with pytest.raises(ConcurrentUpdate, match="renaming: matched 0 rows"):
        rename_a_missing_key()
    if db.dialect == "sqlite":
        assert not reached
    assert stored_keys(db) == {}


def test_pipelined_changes_are_written_and_read_back_in_the_block(db: Database) -> None:
    with db.write() as conn, _statements.pipelined(conn):
        _statements.run(conn, INSERT, key(1))
        # A read waits for the changes sent before it.
        assert _statements.first(conn, FIND, {"the_key": "k1"}) == key(1)
        # Many rows, in a block, are not a COPY (PostgreSQL cannot pipeline one).
        _statements.run_many(conn, INSERT, [key(n + 2) for n in range(_statements.COPY_FROM)])
        renames = [rename(f"k{n + 1}") for n in range(_statements.COPY_FROM + 1)]
        _statements.run_expecting(conn, RENAME, renames, "renaming")
    with db.read() as conn:
        stored = conn.execute(sa.select(idempotency_keys).order_by("created_at")).mappings()
        expected = [key(n + 1, operation="settle") for n in range(_statements.COPY_FROM + 1)]
        assert [dict(row) for row in stored] == expected


def test_a_commit_in_a_pipelined_block_goes_with_its_changes(db: Database) -> None:
    with db.write() as conn:
        with _statements.pipelined(conn, commit=True):
            _statements.run(conn, INSERT, key(1))
            _statements.run_expecting(conn, RENAME, [rename("k1")], "renaming")
        assert not conn.in_transaction()
        assert stored_keys(db) == {"k1": "settle"}  # committed, seen from elsewhere
        _statements.run(conn, INSERT, key(2))  # the next transaction, committed on leaving
    assert stored_keys(db) == {"k1": "settle", "k2": "charge"}


def test_a_change_refused_before_a_commit_in_the_block_undoes_everything(db: Database) -> None:
    def write_then_commit() -> None:
        with db.write() as conn, _statements.pipelined(conn, commit=True):
            _statements.run(conn, INSERT, key(1))
            _statements.run_expecting(conn, RENAME, [rename("absent")], "renaming")
            _statements.run(conn, INSERT, key(2))

    with pytest.raises(ConcurrentUpdate):
        write_then_commit()
    assert stored_keys(db) == {}


INSERT_FEATURE = _statements.Statement(features.insert())
INSERT_FEATURE_VERSION = _statements.Statement(feature_versions.insert())


def feature(n: int) -> dict[str, Any]:
    return {"key": f"f{n}", "name": f"F{n}", "pool": "default", "rule": {"n": n}, "version": 1}


def statements_seen(db: Database) -> list[tuple[str, Any]]:
    """Each statement sent from now on, with its parameters."""
    seen: list[tuple[str, Any]] = []
    sa.event.listen(
        db.engine, "before_cursor_execute", lambda *args: seen.append((args[2], args[3]))
    )
    return seen


def test_a_blocks_changes_of_different_tables_go_as_one_statement(db: Database) -> None:
    seen = statements_seen(db)
    with db.write() as conn, _statements.pipelined(conn, commit=True):
        _statements.run(conn, INSERT_FEATURE, {**feature(1), "updated_at": AT})
        # Its foreign key is checked at the end of the statement, once the feature is in.
        _statements.run(conn, INSERT_FEATURE_VERSION, {**feature(1), "valid_from": AT})
        _statements.run(conn, INSERT, key(1))
        # A second change of a table waits for the first: it sees the key.
        _statements.run_expecting(conn, RENAME, [rename("k1")], "renaming")
    changes = [sql.split()[0] for sql, _ in seen]
    if db.dialect == "postgresql":
        assert changes == ["WITH", "WITH"]
        assert seen[0][0].count(" AS (INSERT INTO ") == 3
    else:
        assert changes == ["INSERT", "INSERT", "INSERT", "UPDATE"]
    assert stored_keys(db) == {"k1": "settle"}
    with db.read() as conn:
        assert conn.execute(sa.select(feature_versions.c.key)).scalars().all() == ["f1"]


UPSERT_KEY = _statements.Statement(
    sa.text(
        "INSERT INTO idempotency_keys (owner, key, operation, fingerprint, result, created_at)"
        " VALUES (:owner, :key, :operation, :fingerprint, :result, :created_at)"
        " ON CONFLICT (owner, key) DO UPDATE SET operation = excluded.operation"
    ).bindparams(sa.bindparam("result", type_=idempotency_keys.c.result.type))
)


def test_pipelined_upserts_of_several_rows_keep_their_conflict_clause(db: Database) -> None:
    with db.write() as conn:
        _statements.run(conn, INSERT, key(1))
        conn.commit()
    with db.write() as conn, _statements.pipelined(conn, commit=True):
        _statements.run_many(
            conn, UPSERT_KEY, [key(1, operation="settle"), key(2, operation="settle")]
        )
    assert stored_keys(db) == {"k1": "settle", "k2": "settle"}


def test_changes_held_past_what_psycopg_caches_go_as_several_statements(db: Database) -> None:
    seen = statements_seen(db)
    with db.write() as conn, _statements.pipelined(conn, commit=True):
        _statements.run_many(
            conn, INSERT_FEATURE, [{**feature(n), "updated_at": AT} for n in range(3)]
        )
        versions = [{**feature(n), "valid_from": AT} for n in range(3)]
        _statements.run_many(conn, INSERT_FEATURE_VERSION, versions)
        _statements.run_many(conn, INSERT, [key(n) for n in range(3)])
    if db.dialect == "postgresql":
        assert len(seen) == 2
        for sql, params in seen:
            assert sql.startswith("WITH")
            assert len(sql.encode()) <= _statements.STATEMENT_BYTES
            assert len(params) <= _statements.STATEMENT_PARAMETERS
    with db.read() as conn:
        assert len(conn.execute(sa.select(feature_versions.c.key)).all()) == 3
    assert len(stored_keys(db)) == 3


def test_a_change_too_large_to_hold_goes_by_itself_in_order(db: Database) -> None:
    seen = statements_seen(db)
    with db.write() as conn, _statements.pipelined(conn, commit=True):
        _statements.run(conn, INSERT, key(0))
        _statements.run_many(
            conn, INSERT_FEATURE, [{**feature(n), "updated_at": AT} for n in range(9)]
        )
    if db.dialect == "postgresql":
        # The key held, sent first; then the features, one statement executed for each.
        assert [sql.split()[0] for sql, _ in seen] == ["WITH", "INSERT"]
        assert len(seen[1][1]) == 9
    with db.read() as conn:
        assert len(conn.execute(sa.select(features.c.key)).all()) == 9
    assert stored_keys(db) == {"k0": "charge"}


def test_a_held_conditional_change_that_misses_undoes_the_others(db: Database) -> None:
    def write_then_rename_a_missing_key() -> None:
        with db.write() as conn, _statements.pipelined(conn, commit=True):
            _statements.run(conn, INSERT_FEATURE, {**feature(1), "updated_at": AT})
            _statements.run_expecting(conn, RENAME, [rename("absent")], "renaming")

    with pytest.raises(ConcurrentUpdate, match="renaming: matched 0 rows"):
        write_then_rename_a_missing_key()
    with db.read() as conn:
        assert conn.execute(sa.select(features.c.key)).all() == []


def test_a_pipelined_driver_error_is_sqlalchemys_and_undoes_the_transaction(
    db: Database,
) -> None:
    with db.write() as conn:
        _statements.run(conn, INSERT, key(0))

    def insert_a_key_twice() -> None:
        with db.write() as conn, _statements.pipelined(conn):
            _statements.run(conn, INSERT, key(1))
            _statements.run(conn, INSERT, key(0))
            _statements.run(conn, INSERT, key(2))

    with pytest.raises(IntegrityError):
        insert_a_key_twice()
    with db.read() as conn:
        assert _statements.rows(conn, FIND, {"the_key": "k1"}) == []
        assert _statements.rows(conn, FIND, {"the_key": "k2"}) == []


def test_a_connection_lost_in_a_pipelined_block_is_reported_as_lost(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("a pipeline is PostgreSQL's")
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")

    def write_on_a_connection_killed_under_it() -> None:
        with db.write() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with _statements.pipelined(conn):
                _statements.run(conn, INSERT, key(1))
                with admin.connect() as other:
                    other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                _statements.run(conn, INSERT, key(2))

    try:
        with pytest.raises(DBAPIError) as lost:
            write_on_a_connection_killed_under_it()
    finally:
        admin.dispose()
    assert lost.value.connection_invalidated
    with db.read() as conn:  # and the pool goes on with a new connection
        assert _statements.rows(conn, FIND, {"the_key": "k1"}) == []


@pytest.mark.parametrize("count", [1, 40])
def test_a_driver_error_is_sqlalchemys_and_undoes_the_transaction(db: Database, count: int) -> None:
    with db.write() as conn:
        _statements.run(conn, INSERT, key(0))

    def insert_a_key_twice() -> None:
        with db.write() as conn:
            _statements.run(conn, INSERT, key(1))
            _statements.run_many(conn, INSERT, [key(n + 2) for n in range(count)] + [key(0)])

    with pytest.raises(IntegrityError):
        insert_a_key_twice()
    with db.read() as conn:
        assert _statements.rows(conn, FIND, {"the_key": "k1"}) == []


def test_a_statement_after_a_commit_begins_the_next_transaction(db: Database) -> None:
    def fail_after_a_commit() -> None:
        with db.write() as conn:
            _statements.run(conn, INSERT, key(1))
            conn.commit()
            _statements.run(conn, INSERT, key(2))
            raise RuntimeError("undo what followed the commit")

    with pytest.raises(RuntimeError):
        fail_after_a_commit()
    with db.read() as conn:
        assert _statements.first(conn, FIND, {"the_key": "k1"}) is not None
        assert _statements.first(conn, FIND, {"the_key": "k2"}) is None


def test_listeners_see_each_statement(db: Database) -> None:
    seen: list[tuple[str, bool]] = []

    def before(*args: Any) -> None:
        seen.append((args[2].split()[0], args[5]))

    sa.event.listen(db.engine, "before_cursor_execute", before)
    with db.write() as conn:
        _statements.run(conn, INSERT, key(1))
        _statements.run_many(conn, INSERT, [key(n + 2) for n in range(_statements.COPY_FROM)])
        _statements.rows(conn, FIND, {"the_key": "k1"})
    bulk = "COPY" if db.dialect == "postgresql" else "INSERT"
    assert seen == [("INSERT", False), (bulk, True), ("SELECT", False)]


SELECT_ONE_OF = sa.select(idempotency_keys.c.key).where(
    _statements.one_of(idempotency_keys.c.key, "keys")
)
ONE_OF = _statements.Statement(SELECT_ONE_OF)


@pytest.mark.parametrize(
    "wanted",
    [[], ["k1"], ["k0", "k2", "absent", "k0"], ["it's", 'a "quoted" key', "ключ"]],
)
def test_one_of_takes_a_list_as_one_parameter(db: Database, wanted: list[str]) -> None:
    stored = [key(n) for n in range(3)] + [key(3, key="it's"), key(4, key="ключ")]
    with db.write() as conn:
        _statements.run_many(conn, INSERT, stored)
    with db.read() as conn:
        found = _statements.rows(conn, ONE_OF, {"keys": wanted})
    assert sorted(r["key"] for r in found) == sorted({k["key"] for k in stored} & set(wanted))


# The statement cache builds on SQLAlchemy's compiler and reads some of its private
# attributes (pyproject bounds SQLAlchemy for them). These tests name each one, so that
# a release that changes them fails here, saying which, rather than somewhere far away.
SQLALCHEMY_INTERNALS = (
    "SQLCompiler._bind_processors, SQLCompiler._result_columns (each entry's keyname and "
    "type), SQLCompiler.positiontup, SQLCompiler.bind_names, "
    "TypeEngine._cached_result_processor"
)


def test_the_private_sqlalchemy_attributes_it_reads_are_as_it_expects(db: Database) -> None:
    dialect = db.engine.dialect
    insert = idempotency_keys.insert().compile(dialect=dialect, column_keys=sorted(key(0)))
    select = SELECT_KEY.compile(dialect=dialect)
    changed = f"SQLAlchemy {sa.__version__} changed one of {SQLALCHEMY_INTERNALS}"
    for compiled in (insert, select):
        assert isinstance(compiled, SQLCompiler), changed
        processors = getattr(compiled, "_bind_processors", None)
        assert isinstance(processors, Mapping), f"{changed}: _bind_processors"
        assert all(callable(p) for p in processors.values()), f"{changed}: _bind_processors"
        bind_names = getattr(compiled, "bind_names", None)
        assert isinstance(bind_names, Mapping), f"{changed}: bind_names"
        assert all(isinstance(b, BindParameter) for b in bind_names), f"{changed}: bind_names"
        positions = getattr(compiled, "positiontup", None)
        assert (positions is None) == (dialect.name == "postgresql"), f"{changed}: positiontup"
    assert "created_at" in getattr(insert, "_bind_processors", {}), f"{changed}: _bind_processors"
    columns = getattr(select, "_result_columns", None)
    assert isinstance(columns, list), f"{changed}: _result_columns"
    assert [c.keyname for c in columns] == [c.name for c in idempotency_keys.c], (
        f"{changed}: _result_columns' keyname"
    )
    processors = [c.type._cached_result_processor(dialect, None) for c in columns]
    by_name = dict(zip([c.name for c in idempotency_keys.c], processors, strict=True))
    assert by_name["created_at"] is not None, f"{changed}: _cached_result_processor"
    assert by_name["key"] is None, f"{changed}: _cached_result_processor"


def sent(db: Database, run: Callable[[sa.Connection], object]) -> list[tuple[str, Any]]:
    """The statements ``run`` sends, with their parameters, in a transaction undone."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: object, _cursor: object, sql: str, parameters: Any, *_: object) -> None:
        seen.append((sql, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.write() as conn:
            run(conn)
            conn.rollback()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    return seen


def test_statements_send_and_read_what_sqlalchemy_does(db: Database) -> None:
    """For the kinds of statement the store runs (an INSERT with JSON and a UTC datetime,
    a SELECT, a conditional UPDATE, a list as one parameter), the cache sends the SQL and
    the converted parameters that SQLAlchemy's ordinary execution sends, and reads rows
    back as it does."""
    many = [key(n) for n in range(3)]
    wanted = {"keys": ["k0", "k2", "absent"]}
    changed = f"SQLAlchemy {sa.__version__}: see {SQLALCHEMY_INTERNALS}"

    def ordinary(conn: sa.Connection) -> None:
        conn.execute(idempotency_keys.insert(), many[0])
        conn.execute(SELECT_KEY, {"the_key": "k0"})
        conn.execute(UPDATE_KEY, rename("k0"))
        conn.execute(SELECT_ONE_OF, wanted)

    def cached(conn: sa.Connection) -> None:
        _statements.run(conn, INSERT, many[0])
        _statements.rows(conn, FIND, {"the_key": "k0"})
        _statements.run(conn, RENAME, rename("k0"))
        _statements.rows(conn, ONE_OF, wanted)

    assert [(sql, _plain(p)) for sql, p in sent(db, cached)] == [
        (sql, _plain(p)) for sql, p in sent(db, ordinary)
    ], changed
    with db.write() as conn:
        _statements.run_many(conn, INSERT, many)
        for n in range(3):
            theirs = conn.execute(SELECT_KEY, {"the_key": f"k{n}"}).mappings().one()
            assert _statements.rows(conn, FIND, {"the_key": f"k{n}"}) == [dict(theirs)], changed
        theirs_too = conn.execute(SELECT_ONE_OF, wanted).mappings().all()
        assert _statements.rows(conn, ONE_OF, wanted) == [dict(r) for r in theirs_too], changed
        conn.rollback()


def _plain(parameters: Any) -> Any:
    """Parameters as comparable values: a driver's wrapper of a value by its ``obj``."""
    if isinstance(parameters, Mapping):
        return {name: _plain(value) for name, value in parameters.items()}
    if isinstance(parameters, list | tuple):
        return [_plain(value) for value in parameters]
    return getattr(parameters, "obj", parameters)
