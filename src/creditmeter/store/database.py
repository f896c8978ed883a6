"""Engine set-up for SQLite and PostgreSQL, and the transactions use cases run in."""

from __future__ import annotations

import select
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, DisconnectionError
from sqlalchemy.pool import StaticPool

from creditmeter.core.errors import InvalidRequest
from creditmeter.store import direct
from creditmeter.store.documents import json_text, json_value

DEFAULT_URL: Final = "sqlite:///creditmeter.db"
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """One engine and the two kinds of transaction a use case runs in.

    On SQLite, a write transaction starts with ``BEGIN IMMEDIATE`` so that it holds the write
    lock from its first statement (no lock upgrade, no deadlock); reads use a plain
    ``BEGIN`` and see a snapshot (WAL). On PostgreSQL, use cases lock the account row they
    change (``SELECT … FOR UPDATE``) and conditional updates guard every balance; reads
    run at REPEATABLE READ so that an account and its grants come from one snapshot; and
    the transactions of a process on one account take turns (:meth:`turn`).
    """

    def __init__(self, url: str | None = None, *, pool_size: int = 5) -> None:
        self.url = normalize_url(url or DEFAULT_URL)
        self.engine = _create_engine(self.url, pool_size)
        self.dialect: str = self.engine.dialect.name
        # SQLite has one writer at a time (BEGIN IMMEDIATE): a process writes through one
        # connection it keeps, taken in turn, instead of a pool checkout per transaction.
        self._writer: Connection | None = None
        self._writing = threading.RLock()
        self._turns = Turns()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection whose work is committed at the end, or rolled back on an error.

        A use case may also ``commit()`` part of its work on the way (a new transaction
        begins with the next statement).
        """
        with _refusing_bad_values():
            if self.is_sqlite:
                with self._writing:
                    yield from self._in_transaction(self._sqlite_writer())
                return
            with self.engine.connect() as conn:
                yield from self._in_transaction(conn)

    def _sqlite_writer(self) -> Connection:
        if self._writer is None or self._writer.closed or self._writer.invalidated:
            self._writer = self.engine.connect()
        return self._writer

    @staticmethod
    def _in_transaction(conn: Connection) -> Iterator[Connection]:
        conn.begin()
        with _ended(conn):
            yield conn

    def turn(self, conn: Connection, *account_ids: str) -> AbstractContextManager[None]:
        """The block, once no other thread of this process is in a block of any of these
        accounts (their turns are taken in the order of their ids, as their row locks
        are); ``conn``'s transaction ends with it (committed, or rolled back if the block
        raises), so that the next turn does not wait for its locks. On PostgreSQL a use
        case locks and changes its accounts in such a block, so that of a process's
        transactions on a busy account one at a time asks for the account's row lock
        while the others wait here: each commit wakes every waiter for the row to race
        for it again, and a dozen of them cost PostgreSQL a third more CPU a pair and made
        the slowest answers (a payment event, rare, goes straight to the row lock). No
        thread waits for a turn while it holds a row lock, so turns and row locks, both
        taken in id order, make no cycle. On SQLite, where a process writes one
        transaction at a time anyway, the block runs at once and leaves the transaction
        to the write transaction around it."""
        if self.is_sqlite:
            return _AT_ONCE
        return self._turn(conn, sorted(set(account_ids)))

    @contextmanager
    def _turn(self, conn: Connection, account_ids: list[str]) -> Iterator[None]:
        with ExitStack() as turns:
            for account_id in account_ids:
                turns.enter_context(self._turns.turn(account_id))
            with _ended(conn):
                yield

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that sees one snapshot from its first to its last statement."""
        options: dict[str, Any] = {"creditmeter_read_only": True}
        if not self.is_sqlite:
            options["isolation_level"] = "REPEATABLE READ"
        with (
            _refusing_bad_values(),
            self.engine.connect().execution_options(**options) as conn,
            conn.begin(),
        ):
            yield conn

    def dispose(self) -> None:
        with self._writing:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.engine.dispose()


@contextmanager
def _ended(conn: Connection) -> Iterator[None]:
    """The block, then ``conn``'s transaction committed, or rolled back if it raises."""
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


_AT_ONCE = nullcontext()


class Turns:
    """A lock for each key that some thread is in or waiting for, made on first use and
    forgotten when the last of them leaves, so that a process serving many accounts
    keeps as many locks as accounts it is busy with."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}

    @contextmanager
    def turn(self, key: str) -> Iterator[None]:
        with self._guard:
            found = self._locks.get(key)
            if found is None:
                found = self._locks[key] = (threading.Lock(), [0])
            lock, users = found
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._locks[key]

    def waiting(self, key: str) -> int:
        """How many threads are in the block of ``key`` or waiting for it."""
        with self._guard:
            found = self._locks.get(key)
            return 0 if found is None else found[1][0]


@contextmanager
def _refusing_bad_values() -> Iterator[None]:
    """A value the database cannot store or compare (a NUL character in PostgreSQL text, a
    number out of its range, …) is the caller's error, not the database's."""
    try:
        yield
    except DataError as error:
        raise InvalidRequest(f"the database refused a value: {error.orig}") from None


def _create_engine(url: str, pool_size: int) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # No overflow: more threads than connections wait for one, rather than open and
        # close connections (a PostgreSQL backend process each) under load.
        engine = sa.create_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            json_serializer=json_text,
            json_deserializer=json_value,
        )
        event.listen(engine, "checkout", _replace_if_closed)
        return engine
    in_memory = parsed.database in (None, "", ":memory:")
    options: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": 30},
        "json_serializer": json_text,
        "json_deserializer": json_value,
    }
    if in_memory:
        options["poolclass"] = StaticPool
    else:
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        options["pool_size"] = pool_size
    engine = sa.create_engine(url, **options)
    event.listen(engine, "connect", _configure_sqlite)
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def _replace_if_closed(dbapi_connection: Any, _record: object, _proxy: object) -> None:
    """On checkout, a pooled connection that the server has closed since it was last used
    (a restart, a failover, an idle timeout) is replaced rather than handed to a use case
    that would fail on it. The server says goodbye before it closes one, and the end of
    the stream follows, so a closed connection has something to read where a live idle
    one has nothing: a poll of its socket, microseconds, where SQLAlchemy's pre-ping costs
    a round trip each transaction."""
    readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    if readable:
        raise DisconnectionError("the server closed this pooled connection")


def _configure_sqlite(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun explicitly below
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "foreign_keys=ON",
        f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    ):
        dbapi_connection.execute(f"PRAGMA {pragma}")


def _begin_sqlite(conn: Connection) -> None:
    read_only = conn.get_execution_options().get("creditmeter_read_only", False)
    sql = "BEGIN" if read_only else "BEGIN IMMEDIATE"
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    try:
        dbapi_connection.execute(sql)
    except sqlite3.Error as error:  # "database is locked" after the busy timeout
        raise direct.translated(conn, error, dbapi_connection, sql, ()) from error
