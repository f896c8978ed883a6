"""Statements sent through the driver directly read and write what SQLAlchemy would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from creditmeter.store import direct
from creditmeter.store.database import Database
from creditmeter.store.direct import ConcurrentUpdate
from creditmeter.store.tables import feature_versions, features, idempotency_keys
from tests.conftest import POSTGRES_URL

AT = datetime(2026, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)

INSERT = direct.Statement(idempotency_keys.insert())
SELECT_KEY = sa.select(idempotency_keys).where(idempotency_keys.c.key == sa.bindparam("the_key"))
FIND = direct.Statement(SELECT_KEY)
RENAME = direct.Statement(
    idempotency_keys.update()
    .where(idempotency_keys.c.key == sa.bindparam("the_key"))
    .values(operation=sa.bindparam("new"))
)


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
        direct.run(conn, INSERT, key(1))
    with db.read() as conn:
        ours = direct.first(conn, FIND, {"the_key": "k1"})
        theirs = conn.execute(SELECT_KEY, {"the_key": "k1"}).mappings().one()
    assert ours == dict(theirs)
    assert ours is not None
    assert ours["created_at"] == AT + timedelta(seconds=1)  # aware UTC, microseconds kept
    assert ours["result"] == {"credits": 1, "nested": {"list": [1, "two"]}}


def test_a_missing_row_is_none(db: Database) -> None:
    with db.read() as conn:
        assert direct.first(conn, FIND, {"the_key": "nothing"}) is None
        assert direct.rows(conn, FIND, {"the_key": "nothing"}) == []


@pytest.mark.parametrize("count", [3, direct.COPY_FROM, 250])
def test_many_rows_are_written_in_one_call(db: Database, count: int) -> None:
    # From COPY_FROM rows on, PostgreSQL loads them with COPY.
    with db.write() as conn:
        direct.run_many(conn, INSERT, [key(n) for n in range(count)])
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
    many = [key(100 + n, result=DOCUMENTS[n % len(DOCUMENTS)]) for n in range(direct.COPY_FROM)]
    with db.write() as conn:
        for row in alone:
            direct.run(conn, INSERT, row)
        direct.run_many(conn, INSERT, many)
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
        direct.run_many(conn, INSERT, [key(n) for n in range(3)])
        direct.run_expecting(conn, RENAME, [rename("k0"), rename("k1")], "renaming")
        direct.run_expecting(conn, RENAME, [], "renaming nothing")
    with pytest.raises(ConcurrentUpdate, match="renaming: matched"), db.write() as conn:
        direct.run_expecting(conn, RENAME, [rename("k2"), rename("absent")], "renaming")
    assert stored_keys(db) == {"k0": "settle", "k1": "settle", "k2": "charge"}


def test_pipelined_changes_are_checked_by_the_end_of_the_block(db: Database) -> None:
    # On PostgreSQL the database refuses the change, and the error arrives with a later
    # answer, at the latest at the end of the block; on SQLite, at once.
    reached: list[str] = []

    def rename_a_missing_key() -> None:
        with db.write() as conn, direct.pipelined(conn):
            direct.run(conn, INSERT, key(1))
            direct.run_expecting(conn, RENAME, [rename("absent")], "renaming")
            direct.run_many(conn, INSERT, [key(n + 2) for n in range(direct.COPY_FROM)])
            reached.append("the end of the block")

    with pytest.raises(ConcurrentUpdate, match="renaming: matched 0 rows"):
        rename_a_missing_key()
    if db.dialect == "sqlite":
        assert not reached
    assert stored_keys(db) == {}


def test_pipelined_changes_are_written_and_read_back_in_the_block(db: Database) -> None:
    with db.write() as conn, direct.pipelined(conn):
        direct.run(conn, INSERT, key(1))
        # A read waits for the changes sent before it.
        assert direct.first(conn, FIND, {"the_key": "k1"}) == key(1)
        # Many rows, in a block, are not a COPY (PostgreSQL cannot pipeline one).
        direct.run_many(conn, INSERT, [key(n + 2) for n in range(direct.COPY_FROM)])
        renames = [rename(f"k{n + 1}") for n in range(direct.COPY_FROM + 1)]
        direct.run_expecting(conn, RENAME, renames, "renaming")
    with db.read() as conn:
        stored = conn.execute(sa.select(idempotency_keys).order_by("created_at")).mappings()
        expected = [key(n + 1, operation="settle") for n in range(direct.COPY_FROM + 1)]
        assert [dict(row) for row in stored] == expected


def test_a_commit_in_a_pipelined_block_goes_with_its_changes(db: Database) -> None:
    with db.write() as conn:
        with direct.pipelined(conn, commit=True):
            direct.run(conn, INSERT, key(1))
            direct.run_expecting(conn, RENAME, [rename("k1")], "renaming")
        assert not conn.in_transaction()
        assert stored_keys(db) == {"k1": "settle"}  # committed, seen from elsewhere
        direct.run(conn, INSERT, key(2))  # the next transaction, committed on leaving
    assert stored_keys(db) == {"k1": "settle", "k2": "charge"}


def test_a_change_refused_before_a_commit_in_the_block_undoes_everything(db: Database) -> None:
    def write_then_commit() -> None:
        with db.write() as conn, direct.pipelined(conn, commit=True):
            direct.run(conn, INSERT, key(1))
            direct.run_expecting(conn, RENAME, [rename("absent")], "renaming")
            direct.run(conn, INSERT, key(2))

    with pytest.raises(ConcurrentUpdate):
        write_then_commit()
    assert stored_keys(db) == {}


INSERT_FEATURE = direct.Statement(features.insert())
INSERT_FEATURE_VERSION = direct.Statement(feature_versions.insert())


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
    with db.write() as conn, direct.pipelined(conn, commit=True):
        direct.run(conn, INSERT_FEATURE, {**feature(1), "updated_at": AT})
        # Its foreign key is checked at the end of the statement, once the feature is in.
        direct.run(conn, INSERT_FEATURE_VERSION, {**feature(1), "valid_from": AT})
        direct.run(conn, INSERT, key(1))
        # A second change of a table waits for the first: it sees the key.
        direct.run_expecting(conn, RENAME, [rename("k1")], "renaming")
    changes = [sql.split()[0] for sql, _ in seen]
    if db.dialect == "postgresql":
        assert changes == ["WITH", "WITH"]
        assert seen[0][0].count(" AS (INSERT INTO ") == 3
    else:
        assert changes == ["INSERT", "INSERT", "INSERT", "UPDATE"]
    assert stored_keys(db) == {"k1": "settle"}
    with db.read() as conn:
        assert conn.execute(sa.select(feature_versions.c.key)).scalars().all() == ["f1"]


def test_changes_held_past_what_psycopg_caches_go_as_several_statements(db: Database) -> None:
    seen = statements_seen(db)
    with db.write() as conn, direct.pipelined(conn, commit=True):
        direct.run_many(conn, INSERT_FEATURE, [{**feature(n), "updated_at": AT} for n in range(3)])
        versions = [{**feature(n), "valid_from": AT} for n in range(3)]
        direct.run_many(conn, INSERT_FEATURE_VERSION, versions)
        direct.run_many(conn, INSERT, [key(n) for n in range(3)])
    if db.dialect == "postgresql":
        assert len(seen) == 2
        for sql, params in seen:
            assert sql.startswith("WITH")
            assert len(sql.encode()) <= direct.STATEMENT_BYTES
            assert len(params) <= direct.STATEMENT_PARAMETERS
    with db.read() as conn:
        assert len(conn.execute(sa.select(feature_versions.c.key)).all()) == 3
    assert len(stored_keys(db)) == 3


def test_a_change_too_large_to_hold_goes_by_itself_in_order(db: Database) -> None:
    seen = statements_seen(db)
    with db.write() as conn, direct.pipelined(conn, commit=True):
        direct.run(conn, INSERT, key(0))
        direct.run_many(conn, INSERT_FEATURE, [{**feature(n), "updated_at": AT} for n in range(9)])
    if db.dialect == "postgresql":
        # The key held, sent first; then the features, one statement executed for each.
        assert [sql.split()[0] for sql, _ in seen] == ["WITH", "INSERT"]
        assert len(seen[1][1]) == 9
    with db.read() as conn:
        assert len(conn.execute(sa.select(features.c.key)).all()) == 9
    assert stored_keys(db) == {"k0": "charge"}


def test_a_held_conditional_change_that_misses_undoes_the_others(db: Database) -> None:
    def write_then_rename_a_missing_key() -> None:
        with db.write() as conn, direct.pipelined(conn, commit=True):
            direct.run(conn, INSERT_FEATURE, {**feature(1), "updated_at": AT})
            direct.run_expecting(conn, RENAME, [rename("absent")], "renaming")

    with pytest.raises(ConcurrentUpdate, match="renaming: matched 0 rows"):
        write_then_rename_a_missing_key()
    with db.read() as conn:
        assert conn.execute(sa.select(features.c.key)).all() == []


def test_a_pipelined_driver_error_is_sqlalchemys_and_undoes_the_transaction(
    db: Database,
) -> None:
    with db.write() as conn:
        direct.run(conn, INSERT, key(0))

    def insert_a_key_twice() -> None:
        with db.write() as conn, direct.pipelined(conn):
            direct.run(conn, INSERT, key(1))
            direct.run(conn, INSERT, key(0))
            direct.run(conn, INSERT, key(2))

    with pytest.raises(IntegrityError):
        insert_a_key_twice()
    with db.read() as conn:
        assert direct.rows(conn, FIND, {"the_key": "k1"}) == []
        assert direct.rows(conn, FIND, {"the_key": "k2"}) == []


def test_a_connection_lost_in_a_pipelined_block_is_reported_as_lost(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("a pipeline is PostgreSQL's")
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")

    def write_on_a_connection_killed_under_it() -> None:
        with db.write() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with direct.pipelined(conn):
                direct.run(conn, INSERT, key(1))
                with admin.connect() as other:
                    other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                direct.run(conn, INSERT, key(2))

    try:
        with pytest.raises(DBAPIError) as lost:
            write_on_a_connection_killed_under_it()
    finally:
        admin.dispose()
    assert lost.value.connection_invalidated
    with db.read() as conn:  # and the pool goes on with a new connection
        assert direct.rows(conn, FIND, {"the_key": "k1"}) == []


@pytest.mark.parametrize("count", [1, 40])
def test_a_driver_error_is_sqlalchemys_and_undoes_the_transaction(db: Database, count: int) -> None:
    with db.write() as conn:
        direct.run(conn, INSERT, key(0))

    def insert_a_key_twice() -> None:
        with db.write() as conn:
            direct.run(conn, INSERT, key(1))
            direct.run_many(conn, INSERT, [key(n + 2) for n in range(count)] + [key(0)])

    with pytest.raises(IntegrityError):
        insert_a_key_twice()
    with db.read() as conn:
        assert direct.rows(conn, FIND, {"the_key": "k1"}) == []


def test_a_statement_after_a_commit_begins_the_next_transaction(db: Database) -> None:
    def fail_after_a_commit() -> None:
        with db.write() as conn:
            direct.run(conn, INSERT, key(1))
            conn.commit()
            direct.run(conn, INSERT, key(2))
            raise RuntimeError("undo what followed the commit")

    with pytest.raises(RuntimeError):
        fail_after_a_commit()
    with db.read() as conn:
        assert direct.first(conn, FIND, {"the_key": "k1"}) is not None
        assert direct.first(conn, FIND, {"the_key": "k2"}) is None


def test_listeners_see_each_statement(db: Database) -> None:
    seen: list[tuple[str, bool]] = []

    def before(*args: Any) -> None:
        seen.append((args[2].split()[0], args[5]))

    sa.event.listen(db.engine, "before_cursor_execute", before)
    with db.write() as conn:
        direct.run(conn, INSERT, key(1))
        direct.run_many(conn, INSERT, [key(n + 2) for n in range(direct.COPY_FROM)])
        direct.rows(conn, FIND, {"the_key": "k1"})
    bulk = "COPY" if db.dialect == "postgresql" else "INSERT"
    assert seen == [("INSERT", False), (bulk, True), ("SELECT", False)]


ONE_OF = direct.Statement(
    sa.select(idempotency_keys.c.key).where(direct.one_of(idempotency_keys.c.key, "keys"))
)


@pytest.mark.parametrize(
    "wanted",
    [[], ["k1"], ["k0", "k2", "absent", "k0"], ["it's", 'a "quoted" key', "ключ"]],
)
def test_one_of_takes_a_list_as_one_parameter(db: Database, wanted: list[str]) -> None:
    stored = [key(n) for n in range(3)] + [key(3, key="it's"), key(4, key="ключ")]
    with db.write() as conn:
        direct.run_many(conn, INSERT, stored)
    with db.read() as conn:
        found = direct.rows(conn, ONE_OF, {"keys": wanted})
    assert sorted(r["key"] for r in found) == sorted({k["key"] for k in stored} & set(wanted))


def test_a_query_queued_with_the_next_runs_after_them_in_their_round_trip(db: Database) -> None:
    seen = statements_seen(db)
    with db.write() as conn:
        direct.run_many(conn, INSERT, [key(0), key(1)])
        later = direct.with_next(conn, FIND, {"the_key": "k1"})
        direct.run(conn, RENAME, rename("k1"))  # before the queued query is sent
        assert direct.rows_each(conn, [(FIND, {"the_key": "k0"})]) == [[key(0)]]
        assert later() == [key(1, operation="settle")]
        assert later() == [key(1, operation="settle")]  # read once
    assert [sql.split()[0] for sql, _ in seen] == ["INSERT", "UPDATE", "SELECT", "SELECT"]


def test_a_queued_query_asked_for_first_runs_by_itself_once(db: Database) -> None:
    seen = statements_seen(db)
    with db.write() as conn:
        direct.run(conn, INSERT, key(1))
        later = direct.with_next(conn, FIND, {"the_key": "k1"})
        assert later() == [key(1)]
        assert direct.rows_each(conn, [(FIND, {"the_key": "k0"})]) == [[]]
    assert [sql.split()[0] for sql, _ in seen] == ["INSERT", "SELECT", "SELECT"]
