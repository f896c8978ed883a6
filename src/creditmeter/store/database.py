"""Engine set-up for SQLite and PostgreSQL, and the transactions use cases run in."""

from __future__ import annotations

import logging
import select
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.pool import StaticPool

from creditmeter.core.errors import CreditMeterError, InvalidRequest, TotalOutOfRange
from creditmeter.store import _statements
from creditmeter.store.documents import json_text, json_value

COPY_FROM = _statements.COPY_FROM
"""Rows from which an insert is copied on PostgreSQL, outside a pipeline."""

DEFAULT_URL: Final = "sqlite:///creditmeter.db"
APPLICATION_NAME: Final = "creditmeter"
"""The ``application_name`` of PostgreSQL sessions whose URL names none."""
KEEPALIVE_PROBES: Final = 3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timeouts:
    """How long a lock may be waited for, and how long a connection may keep one while its
    process says nothing, in seconds: the bounds that keep a stuck process (frozen, or cut
    off from the database) from stalling an account for longer than seconds. 0 leaves a
    bound to the server's own setting, except ``lock``, which is always bounded."""

    lock: float = 5.0
    """A wait for a lock: PostgreSQL's ``lock_timeout`` (an account's row lock) and a wait
    for the process's own lock on the account (:meth:`Database.account_locks`); on
    SQLite, the busy timeout (the database's write lock) and a wait for the process's one
    writing connection."""
    idle_in_transaction: float = 30.0
    """PostgreSQL's ``idle_in_transaction_session_timeout``: a session whose process has
    said nothing for this long in the middle of a transaction is ended, and its locks
    released."""
    statement: float = 60.0
    """PostgreSQL's ``statement_timeout``: a statement running this long is cancelled (a
    process that stops in the middle of a pipeline of statements included)."""
    keepalive: int = 30
    """Seconds a PostgreSQL connection may be silent before TCP probes the other end, on
    both ends; an end that answers no probe, or leaves data unacknowledged, for twice as
    long is given up on (a host that froze or lost its network)."""

    def __post_init__(self) -> None:
        if self.lock <= 0:
            raise ValueError("the lock timeout must be positive")
        if min(self.idle_in_transaction, self.statement, self.keepalive) < 0:
            raise ValueError("a timeout cannot be negative")


DEFAULT_TIMEOUTS: Final = Timeouts()


class LockTimeout(CreditMeterError):
    """A lock was not granted within the lock timeout (:attr:`Timeouts.lock`): another
    writer holds it, perhaps a process that stopped. Nothing was written: make the call
    again shortly, with the same idempotency key."""

    code = "busy"


def not_granted(what: str, seconds: float) -> LockTimeout:
    return LockTimeout(
        f"{what} was not granted within {seconds:g} s: another writer holds it; retry shortly"
    )


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
    the transactions of a process on one account run one at a time
    (:meth:`account_locks`).
    """

    def __init__(
        self, url: str | None = None, *, pool_size: int = 5, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> None:
        self.url = normalize_url(url or DEFAULT_URL)
        self.timeouts = timeouts
        self.engine = _create_engine(self.url, pool_size, timeouts)
        self.dialect: str = self.engine.dialect.name
        # SQLite has one writer at a time (BEGIN IMMEDIATE): a process writes through one
        # connection it keeps, taken in turn, instead of a pool checkout per transaction.
        self._writer: Connection | None = None
        self._writing = threading.RLock()
        self._account_locks = KeyedLocks()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection whose work is committed at the end, or rolled back on an error.

        A use case may also ``commit()`` part of its work on the way (a new transaction
        begins with the next statement).
        """
        with _refusing_bad_values(), self._lock_waits_bounded():
            if self.is_sqlite:
                with self._holding_writer():
                    yield from self._in_transaction(self._sqlite_writer())
                return
            with self.engine.connect() as conn:
                try:
                    yield from self._in_transaction(conn)
                except DBAPIError as error:
                    if ended_lock_wait(error) and self.timeouts.idle_in_transaction:
                        self.end_stuck_sessions(conn)
                    raise

    @contextmanager
    def _holding_writer(self) -> Iterator[None]:
        """The block, once no other thread of this process writes to SQLite (for up to the
        lock timeout)."""
        if not self._writing.acquire(timeout=self.timeouts.lock):
            raise not_granted("the database's write lock", self.timeouts.lock)
        try:
            yield
        finally:
            self._writing.release()

    @contextmanager
    def _lock_waits_bounded(self) -> Iterator[None]:
        """The block, its lock wait that the database cut short raised as
        :class:`LockTimeout`."""
        try:
            yield
        except DBAPIError as error:
            if not ended_lock_wait(error):
                raise
            raise not_granted("a lock", self.timeouts.lock) from error

    def end_stuck_sessions(self, conn: Connection) -> int:
        """End this application's PostgreSQL sessions that have sat idle in a transaction
        for longer than the idle-in-transaction timeout (those of the same database, user
        and ``application_name``), releasing their locks; how many. PostgreSQL ends them
        itself only when it last answered them with its ReadyForQuery: psycopg leaves a
        pipeline with a Sync followed by a Flush, and a Flush turns the timeout off until
        the next ReadyForQuery, so a process that stops after a pipelined round trip
        keeps its locks. Called on ``conn``, out of a transaction, by a use case that
        waited for a lock until the lock timeout, so that a stuck holder costs the waiters
        seconds."""
        try:
            conn.rollback()
            with conn.begin():
                ended = conn.execute(_END_STUCK, {"seconds": self.timeouts.idle_in_transaction})
                count: int = ended.scalar_one()
        except sa.exc.SQLAlchemyError:
            log.exception("ending the sessions idle in a transaction failed")
            return 0
        if count:
            log.warning(
                "ended %d database sessions idle in a transaction for over %g s",
                count,
                self.timeouts.idle_in_transaction,
            )
        return count

    def _sqlite_writer(self) -> Connection:
        if self._writer is None or self._writer.closed or self._writer.invalidated:
            self._writer = self.engine.connect()
        return self._writer

    @staticmethod
    def _in_transaction(conn: Connection) -> Iterator[Connection]:
        conn.begin()
        with _ended(conn):
            yield conn

    def account_locks(self, *account_ids: str) -> AbstractContextManager[None]:
        """The block, holding this process's lock on each of these accounts (taken in id
        order, as row locks are, and before them). Taken by a unit of work for its
        transaction: the transaction ends before the locks are released.

        On PostgreSQL, so that one transaction of a process at a time waits for a busy
        account's row lock: each commit wakes every waiter for the row to race again (see
        docs/performance-decisions.md). No thread waits for these locks while holding a
        row lock, so the two make no cycle. On SQLite, which writes one transaction at a
        time anyway, the block runs at once."""
        if self.is_sqlite:
            return _AT_ONCE
        return self._account_locks_held(sorted(set(account_ids)))

    @contextmanager
    def _account_locks_held(self, account_ids: list[str]) -> Iterator[None]:
        with ExitStack() as held:
            for account_id in account_ids:
                held.enter_context(self._account_locks.locked(account_id, self.timeouts.lock))
            yield

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that sees one snapshot from its first to its last statement."""
        options: dict[str, Any] = {"creditmeter_read_only": True}
        if not self.is_sqlite:
            options["isolation_level"] = "REPEATABLE READ"
        with (
            _refusing_bad_values(),
            self._lock_waits_bounded(),
            self.engine.connect().execution_options(**options) as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def read_one(self) -> Iterator[Connection]:
        """A connection for one statement, which sees one snapshot by itself: on
        PostgreSQL it runs without a transaction around it (no ``BEGIN`` and ``COMMIT``
        round trips); on SQLite it is :meth:`read`."""
        if self.is_sqlite:
            with self.read() as conn:
                yield conn
            return
        options = {"creditmeter_read_only": True, "isolation_level": "AUTOCOMMIT"}
        with (
            _refusing_bad_values(),
            self._lock_waits_bounded(),
            self.engine.connect().execution_options(**options) as conn,
        ):
            yield conn

    def dispose(self) -> None:
        with self._writing:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.engine.dispose()


def pipelined(conn: Connection, *, commit: bool = False) -> AbstractContextManager[None]:
    """The block's changes sent together at its end, in one round trip on PostgreSQL (a
    read in the block sends those before it first); with ``commit``, the ``COMMIT`` goes
    in the same round trip. For a unit of work's writes while it holds an account's lock:
    each round trip saved is time another request for the account is not kept waiting.
    On SQLite the block changes nothing but the ``commit``."""
    return _statements.pipelined(conn, commit=commit)


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


class KeyedLocks:
    """A lock for each key that some thread holds or waits for, made on first use and
    forgotten when the last of them leaves, so that a process serving many accounts
    keeps as many locks as accounts it is busy with."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}

    @contextmanager
    def locked(self, key: str, timeout: float | None = None) -> Iterator[None]:
        """The block, holding the lock of ``key``; :class:`LockTimeout` if ``timeout``
        seconds pass before it is granted."""
        with self._guard:
            found = self._locks.get(key)
            if found is None:
                found = self._locks[key] = (threading.Lock(), [0])
            lock, users = found
            users[0] += 1
        try:
            if not lock.acquire(timeout=-1 if timeout is None else timeout):
                raise not_granted(f"the turn on {key!r}", timeout or 0)
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._locks[key]

    def waiting(self, key: str) -> int:
        """How many threads hold the lock of ``key`` or wait for it."""
        with self._guard:
            found = self._locks.get(key)
            return 0 if found is None else found[1][0]


SQLITE_OVERFLOW: Final = "integer overflow"
"""SQLite's error for a ``SUM`` past 64 bits."""
NUMERIC_VALUE_OUT_OF_RANGE: Final = "22003"
"""PostgreSQL's SQLSTATE for a number past its column's type (``bigint out of range``)."""


@contextmanager
def _refusing_bad_values() -> Iterator[None]:
    """A value the database cannot store or compare (a NUL character in PostgreSQL text, a
    number out of its range, …) or a total past 64 bits is the caller's error, not the
    database's: never a 500, never "unavailable"."""
    try:
        yield
    except DataError as error:
        if getattr(error.orig, "sqlstate", None) == NUMERIC_VALUE_OUT_OF_RANGE:
            out_of_range = f"a number is out of the database's range: {error.orig}"
            raise TotalOutOfRange(out_of_range) from None
        raise InvalidRequest(f"the database refused a value: {error.orig}") from None
    except OperationalError as error:
        if str(error.orig) != SQLITE_OVERFLOW:
            raise
        raise TotalOutOfRange("a total is out of the database's range (64 bits)") from None
    except OverflowError as error:  # the sqlite3 driver's, for an integer past 64 bits
        raise TotalOutOfRange(f"a number is out of the database's range: {error}") from None


def _create_engine(url: str, pool_size: int, timeouts: Timeouts) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # No overflow: more threads than connections wait for one, rather than open and
        # close connections (a PostgreSQL backend process each) under load.
        engine = sa.create_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            connect_args=postgresql_parameters(parsed, timeouts),
            json_serializer=json_text,
            json_deserializer=json_value,
        )
        event.listen(engine, "checkout", _replace_if_closed)
        return engine
    in_memory = parsed.database in (None, "", ":memory:")
    options: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": timeouts.lock},
        "json_serializer": json_text,
        "json_deserializer": json_value,
    }
    if in_memory:
        options["poolclass"] = StaticPool
    else:
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        options["pool_size"] = pool_size
    engine = sa.create_engine(url, **options)
    event.listen(engine, "connect", partial(_configure_sqlite, busy_timeout=timeouts.lock))
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


def postgresql_parameters(url: sa.URL, timeouts: Timeouts) -> dict[str, Any]:
    """The connection parameters that put ``timeouts`` in force on each PostgreSQL
    connection from its start (no statement of their own): the server's settings in its
    ``options``, before the URL's own (so that a setting the URL gives wins), and libpq's
    TCP keepalives and user timeout, unless the URL gives them; the sessions are named
    ``creditmeter`` unless the URL names them."""
    seconds = {
        "lock_timeout": timeouts.lock,
        "idle_in_transaction_session_timeout": timeouts.idle_in_transaction,
        "statement_timeout": timeouts.statement,
    }
    settings = {name: str(max(1, round(s * 1000))) for name, s in seconds.items() if s}
    tcp: dict[str, int] = {}
    if timeouts.keepalive:
        idle = timeouts.keepalive
        tcp = {
            "keepalives_idle": idle,
            "keepalives_interval": max(1, idle // KEEPALIVE_PROBES),
            "keepalives_count": KEEPALIVE_PROBES,
            "tcp_user_timeout": 2 * idle * 1000,
        }
        settings["tcp_keepalives_idle"] = str(tcp["keepalives_idle"])
        settings["tcp_keepalives_interval"] = str(tcp["keepalives_interval"])
        settings["tcp_keepalives_count"] = str(KEEPALIVE_PROBES)
        settings["tcp_user_timeout"] = str(tcp["tcp_user_timeout"])
    given = url.query.get("options", ())
    options = [f"-c {name}={value}" for name, value in settings.items()]
    options += [given] if isinstance(given, str) else list(given)
    parameters: dict[str, Any] = {"options": " ".join(options)}
    if "application_name" not in url.query:
        parameters["application_name"] = APPLICATION_NAME
    if tcp and "keepalives" not in url.query:
        parameters["keepalives"] = 1
        parameters.update((name, value) for name, value in tcp.items() if name not in url.query)
    return parameters


_END_STUCK = sa.text(
    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE application_name = current_setting('application_name')"
    " AND datname = current_database() AND usename = current_user"
    " AND pid <> pg_backend_pid()"
    " AND state IN ('idle in transaction', 'idle in transaction (aborted)')"
    " AND state_change < now() - make_interval(secs => :seconds)"
)


def _configure_sqlite(
    dbapi_connection: sqlite3.Connection, _record: object, *, busy_timeout: float
) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun explicitly below
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "foreign_keys=ON",
        f"busy_timeout={round(busy_timeout * 1000)}",
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
        raise _statements.translated(conn, error, dbapi_connection, sql, ()) from error


# What a failed transaction means, from PostgreSQL's SQLSTATE or SQLite's (extended) result
# code, never from the text of a message, which depends on the server's language.
SERIALIZATION_FAILURE: Final = "40001"
DEADLOCK_DETECTED: Final = "40P01"
IDLE_IN_TRANSACTION_SESSION_TIMEOUT: Final = "25P03"
LOCK_NOT_AVAILABLE: Final = "55P03"
SQLITE_BUSY: Final = 5
SQLITE_LOCKED: Final = 6
SQLITE_BUSY_RECOVERY: Final = 261
SQLITE_LOCKED_SHAREDCACHE: Final = 262
SQLITE_BUSY_SNAPSHOT: Final = 517
SQLITE_LOCKED_VTAB: Final = 518
SQLITE_BUSY_TIMEOUT: Final = 773

_ROLLED_BACK_SQLSTATES: Final = frozenset(
    {SERIALIZATION_FAILURE, DEADLOCK_DETECTED, IDLE_IN_TRANSACTION_SESSION_TIMEOUT}
)
_ROLLED_BACK_SQLITE_CODES: Final = frozenset(
    {
        SQLITE_LOCKED,
        SQLITE_LOCKED_SHAREDCACHE,
        SQLITE_LOCKED_VTAB,
        SQLITE_BUSY_RECOVERY,
        SQLITE_BUSY_SNAPSHOT,
    }
)
_LOCK_WAIT_SQLSTATES: Final = frozenset({LOCK_NOT_AVAILABLE})
_LOCK_WAIT_SQLITE_CODES: Final = frozenset({SQLITE_BUSY, SQLITE_BUSY_TIMEOUT})


def transient(error: BaseException) -> bool:
    """Whether the database rolled the transaction back for a reason of the moment, so that
    running it again from the start is safe and may succeed: a deadlock or a serialization
    failure; a session ended idle in its transaction (its process had stopped, so no
    ``COMMIT`` had been sent); on SQLite, a snapshot gone stale, a table locked within the
    process, a log being recovered."""
    sqlstate, sqlite_code = _codes(error)
    return sqlstate in _ROLLED_BACK_SQLSTATES or sqlite_code in _ROLLED_BACK_SQLITE_CODES


def ended_lock_wait(error: BaseException) -> bool:
    """Whether the database gave up waiting for a lock: PostgreSQL's ``lock_timeout``,
    SQLite's busy timeout. The wait already took the lock timeout: it is not worth
    repeating at once."""
    sqlstate, sqlite_code = _codes(error)
    return sqlstate in _LOCK_WAIT_SQLSTATES or sqlite_code in _LOCK_WAIT_SQLITE_CODES


def _codes(error: BaseException) -> tuple[str | None, int | None]:
    """The SQLSTATE (psycopg) or SQLite result code of a driver's error, or of the one a
    SQLAlchemy error wraps."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    sqlstate = getattr(cause, "sqlstate", None)
    sqlite_code = getattr(cause, "sqlite_errorcode", None)
    return (
        sqlstate if isinstance(sqlstate, str) else None,
        sqlite_code if isinstance(sqlite_code, int) else None,
    )
