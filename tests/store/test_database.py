"""Engine set-up, and the constraints the database holds on its own."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from creditmeter import CreditMeter, InvalidRequest
from creditmeter.store import database
from creditmeter.store import grants as grant_store
from creditmeter.store.database import Database, KeyedLocks, LockTimeout, Timeouts, normalize_url
from creditmeter.store.documents import json_text, json_value
from creditmeter.store.errors import ConcurrentUpdate
from creditmeter.store.tables import UTCDateTime, grants, usage_records
from tests.conftest import POSTGRES_URL


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    db = Database(sqlite_url)
    yield db
    db.dispose()


def pragma(conn: sa.Connection, name: str) -> object:
    return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_pragmas_are_in_force_on_every_connection(sqlite_db: Database) -> None:
    # Two pooled connections at once: each is configured when it is opened.
    with sqlite_db.read() as first, sqlite_db.read() as second:
        assert first.connection.dbapi_connection is not second.connection.dbapi_connection
        for conn in (first, second):
            assert pragma(conn, "journal_mode") == "wal"
            assert pragma(conn, "foreign_keys") == 1
            assert pragma(conn, "synchronous") == 2  # FULL
            assert pragma(conn, "busy_timeout") == 5_000  # the lock timeout


def test_sqlite_pragmas_hold_inside_read_and_write_transactions(sqlite_db: Database) -> None:
    with sqlite_db.write() as conn:
        assert pragma(conn, "foreign_keys") == 1
        assert pragma(conn, "synchronous") == 2
    with sqlite_db.read() as conn:
        assert pragma(conn, "journal_mode") == "wal"
        assert pragma(conn, "foreign_keys") == 1


def test_sqlite_write_transactions_take_the_write_lock_at_once(
    sqlite_db: Database, sqlite_url: str
) -> None:
    path = sa.make_url(sqlite_url).database
    assert path is not None
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with sqlite_db.write(), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        with sqlite_db.read():
            other.execute("BEGIN IMMEDIATE")  # a reader does not block a writer
            other.execute("ROLLBACK")
    finally:
        other.close()


def test_sqlite_foreign_keys_are_enforced(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE child (parent_id INTEGER REFERENCES parent (id))")
    with pytest.raises(IntegrityError), sqlite_db.write() as conn:
        conn.exec_driver_sql("INSERT INTO child (parent_id) VALUES (1)")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/credits", "postgresql+psycopg://u:p@db:5432/credits"),
        ("postgres://u@db/credits", "postgresql+psycopg://u@db/credits"),
        ("postgresql+psycopg://u@db/credits", "postgresql+psycopg://u@db/credits"),
        ("postgresql+psycopg2://u@db/credits", "postgresql+psycopg2://u@db/credits"),
        ("sqlite:///creditmeter.db", "sqlite:///creditmeter.db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_a_plain_postgresql_url_connects_with_psycopg_3(postgresql_url: str) -> None:
    plain = "postgresql://" + postgresql_url.split("://", 1)[1]
    db = Database(plain)
    try:
        assert db.url.startswith("postgresql+psycopg://")
        assert db.dialect == "postgresql"
        assert db.engine.dialect.driver == "psycopg"
        assert not db.is_sqlite
        with db.read() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        db.dispose()


def test_the_default_url_is_a_sqlite_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    db = Database()
    try:
        assert db.url == "sqlite:///creditmeter.db"
        assert db.is_sqlite
        with db.write() as conn:
            assert pragma(conn, "journal_mode") == "wal"
        assert (tmp_path / "creditmeter.db").exists()
    finally:
        db.dispose()


def test_an_in_memory_sqlite_database_is_one_shared_database() -> None:
    db = Database("sqlite://")
    try:
        with db.write() as conn:
            assert pragma(conn, "foreign_keys") == 1
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (7)")
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT x FROM t").scalar() == 7
    finally:
        db.dispose()


@pytest.fixture
def grant_id(meter: CreditMeter) -> str:
    """A grant of 100 credits, 30 of them spent."""
    meter.put_feature("chat", rates={"calls": 30})
    meter.create_account("acme")
    granted = meter.grant("acme", 100, source="purchase")
    meter.charge("acme", "chat")
    return granted.grant_id


def stored(meter: CreditMeter, grant_id: str) -> tuple[int, int, int]:
    with meter.db.read() as conn:
        row = conn.execute(
            sa.select(grants.c.amount, grants.c.remaining, grants.c.held).where(
                grants.c.id == grant_id
            )
        ).one()
    return row.amount, row.remaining, row.held


def test_the_grant_fixture_is_what_it_says(meter: CreditMeter, grant_id: str) -> None:
    assert stored(meter, grant_id) == (100, 70, 0)


def test_change_refuses_to_take_remaining_below_zero(meter: CreditMeter, grant_id: str) -> None:
    with pytest.raises(ConcurrentUpdate), meter.db.write() as conn:
        grant_store.change_many(conn, {grant_id: grant_store.Change(remaining=-71)})
    assert stored(meter, grant_id) == (100, 70, 0)


def test_change_may_take_remaining_to_exactly_zero(meter: CreditMeter, grant_id: str) -> None:
    with meter.db.write() as conn:
        grant_store.change_many(conn, {grant_id: grant_store.Change(remaining=-70)})
    assert stored(meter, grant_id) == (100, 0, 0)


def test_change_refuses_to_hold_more_than_remains(meter: CreditMeter, grant_id: str) -> None:
    with pytest.raises(ConcurrentUpdate), meter.db.write() as conn:
        grant_store.change_many(conn, {grant_id: grant_store.Change(held=71)})
    with pytest.raises(ConcurrentUpdate), meter.db.write() as conn:
        grant_store.change_many(conn, {grant_id: grant_store.Change(held=-1)})
    with meter.db.write() as conn:
        grant_store.change_many(conn, {grant_id: grant_store.Change(held=70)})
    with pytest.raises(ConcurrentUpdate), meter.db.write() as conn:
        grant_store.change_many(conn, {grant_id: grant_store.Change(remaining=-1)})
    assert stored(meter, grant_id) == (100, 70, 70)


def test_change_refuses_remaining_above_amount(meter: CreditMeter, grant_id: str) -> None:
    with pytest.raises(ConcurrentUpdate), meter.db.write() as conn:
        grant_store.change_many(conn, {grant_id: grant_store.Change(remaining=31)})
    with meter.db.write() as conn:
        grant_store.change_many(conn, {grant_id: grant_store.Change(remaining=31, amount=1)})
    assert stored(meter, grant_id) == (101, 101, 0)


def test_change_of_an_unknown_grant_is_refused(meter: CreditMeter, grant_id: str) -> None:
    with pytest.raises(ConcurrentUpdate), meter.db.write() as conn:
        grant_store.change_many(conn, {"grt_missing": grant_store.Change(remaining=1, amount=1)})


GRANT_CONSTRAINTS = [
    # held (0) ≤ remaining fails as well: either constraint may be the one reported.
    ("remaining = -1", "remaining_non_negative|held_within_remaining"),
    ("remaining = -1, amount = -1", "remaining_non_negative|held_within_remaining"),
    ("held = -1", "held_non_negative"),
    ("held = remaining + 1", "held_within_remaining"),
    ("remaining = amount + 1", "remaining_within_amount"),
]

ACCOUNT_CONSTRAINTS = [
    ("held = -1", "held_non_negative"),
    ("debt = -1", "debt_non_negative"),
    ("held = balance + debt + 1", "held_within_grants"),
    ("overdraft_limit = -1", "overdraft_limit_non_negative"),
    ("status = 'frozen'", "status_known"),
]


def test_check_constraints_refuse_a_raw_update_of_a_grant(
    meter: CreditMeter, grant_id: str
) -> None:
    for assignment, constraint in GRANT_CONSTRAINTS:
        with pytest.raises(IntegrityError, match=constraint), meter.db.engine.begin() as conn:
            conn.execute(
                sa.text(f"UPDATE grants SET {assignment} WHERE id = :id"), {"id": grant_id}
            )
    assert stored(meter, grant_id) == (100, 70, 0)


def test_check_constraints_refuse_a_raw_update_of_an_account(
    meter: CreditMeter, grant_id: str
) -> None:
    for assignment, constraint in ACCOUNT_CONSTRAINTS:
        with pytest.raises(IntegrityError, match=constraint), meter.db.engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE accounts SET {assignment} WHERE id = 'acme'"))
    assert meter.balance("acme").available == 70
    assert meter.verify() == []


METADATA = {
    "big": 10**30,
    "negative": -(2**70),
    "nested": {"list": [1, 2.5, "ünï", None, True], "empty": {}},
    "quote": 'say "hi"\n',
}


def test_json_columns_keep_what_json_can_say(meter: CreditMeter) -> None:
    """Integers beyond 64 bits included: orjson refuses them, and the standard library
    writes them."""
    meter.put_feature("call", rates={"calls": 1})
    meter.create_account("acme")
    meter.grant("acme", 10)
    charge = meter.charge("acme", "call", metadata=METADATA)
    assert meter.usage_record(charge.usage_id).metadata == METADATA


_STAMPS = sa.Table(
    "stamps",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=True),
)


@pytest.mark.parametrize(
    "given",
    [
        datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        datetime(2026, 12, 1, 10, 30, 0, 250, tzinfo=timezone(timedelta(hours=1))),
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        None,
    ],
)
def test_datetimes_read_back_as_the_same_instant_in_utc(
    database_url: str, given: datetime | None
) -> None:
    db = Database(database_url)
    try:
        with db.write() as conn:
            _STAMPS.create(conn)
            conn.execute(_STAMPS.insert(), {"id": 1, "at": given})
            read = conn.execute(sa.select(_STAMPS.c.at)).scalar_one()
            stored = conn.execute(sa.text("SELECT CAST(at AS TEXT) FROM stamps")).scalar_one()
    finally:
        db.dispose()
    assert read == given
    assert read is None or read.tzinfo is UTC
    if given is not None and db.is_sqlite:
        # SQLAlchemy's own layout for SQLite, which sorts as the instants do.
        utc = given.astimezone(UTC)
        day = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        assert (
            stored
            == f"{day} {utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}"
        )


def test_a_naive_datetime_is_refused(sqlite_db: Database) -> None:
    naive = datetime(2026, 12, 1)  # noqa: DTZ001 - what is refused
    with sqlite_db.write() as conn:
        _STAMPS.create(conn)
        with pytest.raises(sa.exc.StatementError, match="naive datetime"):
            conn.execute(_STAMPS.insert(), {"id": 1, "at": naive})


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("0.0125", "0.0125"),
        ("9999999999.9999999999", "9999999999.9999999999"),  # 20 digits: beyond a float
        ("0.00000000005", "0.0000000001"),  # rounded to the scale, half away from zero
    ],
)
def test_provider_costs_are_stored_exactly(meter: CreditMeter, given: str, stored: str) -> None:
    meter.put_feature("call", rates={"calls": 1})
    meter.create_account("acme")
    meter.grant("acme", 10)
    charge = meter.charge("acme", "call", provider_cost=Decimal(given))
    with meter.db.read() as conn:
        cost = sa.select(usage_records.c.provider_cost).where(usage_records.c.id == charge.usage_id)
        assert conn.execute(cost).scalar_one() == Decimal(stored)


@pytest.mark.parametrize(
    "cost",
    [Decimal("-0.01"), Decimal("NaN"), Decimal("Infinity"), Decimal("1E+10"), 0.01],
    ids=["negative", "nan", "infinite", "too-large", "float"],
)
def test_a_provider_cost_that_cannot_be_kept_is_refused(meter: CreditMeter, cost: object) -> None:
    meter.put_feature("call", rates={"calls": 1})
    meter.create_account("acme")
    meter.grant("acme", 10)
    hold = meter.authorize("acme", "call", credits=2)
    with pytest.raises(InvalidRequest, match="provider_cost"):
        meter.charge("acme", "call", provider_cost=cost)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="provider_cost"):
        meter.settle(hold.id, credits=1, provider_cost=cost)  # type: ignore[arg-type]
    assert meter.hold(hold.id).status.value == "pending"
    assert meter.balance("acme").available == 8
    with meter.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(usage_records)).scalar() == 0


@pytest.mark.parametrize(
    "value", [METADATA, {1: "a key that is not a string"}, [], "text", 2**63 - 1, 2**64]
)
def test_json_text_is_what_the_standard_library_reads_back(value: object) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize("text", [json_text(METADATA), "{}", ' {"a": 1} ', "[1, 2.5]\n", "10"])
def test_json_value_reads_what_the_standard_library_reads(text: str) -> None:
    assert json_value(text) == json.loads(text)
    assert json_value(text.encode()) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", "{} {}", "{} x", "nul"])
def test_json_value_refuses_what_the_standard_library_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json_value(text)


def backend_pid(db: Database) -> int:
    with db.read() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    assert isinstance(pid, int)
    return pid


def test_a_pooled_connection_the_server_closed_is_replaced_on_checkout(
    postgresql_url: str,
) -> None:
    db = Database(postgresql_url, pool_size=1)
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        first = backend_pid(db)
        assert backend_pid(db) == first  # a live connection is kept
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            gone = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
            while conn.execute(gone, {"pid": first}).scalar():
                time.sleep(0.01)
        second = backend_pid(db)  # no error: the closed one was replaced
        assert second != first
        assert backend_pid(db) == second
    finally:
        admin.dispose()
        db.dispose()


def _holding(locks: KeyedLocks, key: str, entered: threading.Event, leave: threading.Event) -> None:
    with locks.locked(key):
        entered.set()
        assert leave.wait(timeout=30)


def test_a_keyed_lock_waits_for_the_same_key_and_not_for_another() -> None:
    locks = KeyedLocks()
    first_in, first_leave = threading.Event(), threading.Event()
    second_in, second_leave = threading.Event(), threading.Event()
    other_in, other_leave = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=_holding, args=(locks, "acme", first_in, first_leave)),
        threading.Thread(target=_holding, args=(locks, "acme", second_in, second_leave)),
        threading.Thread(target=_holding, args=(locks, "globex", other_in, other_leave)),
    ]
    threads[0].start()
    assert first_in.wait(timeout=30)
    threads[1].start()
    threads[2].start()
    assert other_in.wait(timeout=30)  # another key: not kept waiting
    deadline = time.monotonic() + 30
    while locks.waiting("acme") < 2:  # the second has asked for the lock…
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert not second_in.is_set()  # …and waits for the first's to end
    first_leave.set()
    assert second_in.wait(timeout=30)
    second_leave.set()
    other_leave.set()
    for thread in threads:
        thread.join(timeout=30)
    assert locks.waiting("acme") == locks.waiting("globex") == 0


def test_a_keyed_lock_is_released_when_its_block_raises() -> None:
    locks = KeyedLocks()

    def failing() -> None:
        with locks.locked("acme"):
            assert locks.waiting("acme") == 1
            raise RuntimeError("the use case failed")

    with pytest.raises(RuntimeError):
        failing()
    assert locks.waiting("acme") == 0
    with locks.locked("acme"):  # the next one gets the lock
        assert locks.waiting("acme") == 1


def test_sqlite_writes_take_no_account_locks(sqlite_db: Database) -> None:
    """A process writes to SQLite one transaction at a time anyway: two threads in blocks
    of one account at once are not kept apart."""
    both_in = threading.Barrier(2, timeout=30)

    def in_block() -> None:
        with sqlite_db.read(), sqlite_db.account_locks("acme"):
            both_in.wait()

    threads = [threading.Thread(target=in_block) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not both_in.broken


# Timeouts: how long a lock is waited for, and kept by a process that stopped.


def shown(conn: sa.Connection, *names: str) -> dict[str, object]:
    return {name: conn.exec_driver_sql(f"SHOW {name}").scalar() for name in names}


SERVER_TIMEOUTS = (
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "statement_timeout",
    "tcp_keepalives_idle",
    "tcp_keepalives_interval",
    "tcp_keepalives_count",
    "tcp_user_timeout",
)


def client_socket(conn: sa.Connection) -> socket.socket:
    """A duplicate of the socket of ``conn``'s libpq connection (closed by the caller)."""
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    return socket.fromfd(dbapi_connection.fileno(), socket.AF_INET, socket.SOCK_STREAM)


def test_postgresql_sessions_start_with_the_timeouts_in_force(postgresql_url: str) -> None:
    """On both ends of the connection, with the URL's own options (here its schema) kept."""
    db = Database(postgresql_url)
    try:
        with db.read() as conn:
            assert shown(conn, *SERVER_TIMEOUTS) == {
                "lock_timeout": "5s",
                "idle_in_transaction_session_timeout": "30s",
                "statement_timeout": "1min",
                "tcp_keepalives_idle": "30",
                "tcp_keepalives_interval": "10",
                "tcp_keepalives_count": "3",
                "tcp_user_timeout": "60000",  # milliseconds
            }
            schema = str(sa.make_url(postgresql_url).query["options"]).split("=", 1)[1]
            assert shown(conn, "search_path") == {"search_path": schema}
            assert shown(conn, "application_name") == {"application_name": "creditmeter"}
            with client_socket(conn) as sock:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60_000
    finally:
        db.dispose()


def test_postgresql_timeouts_are_as_given_and_0_leaves_the_defaults(postgresql_url: str) -> None:
    plain = sa.create_engine(POSTGRES_URL)
    db = Database(
        postgresql_url,
        timeouts=Timeouts(lock=0.25, idle_in_transaction=2, statement=0, keepalive=0),
    )
    try:
        with plain.connect() as conn:
            defaults = shown(conn, "statement_timeout", "tcp_keepalives_idle")
            with client_socket(conn) as sock:
                default_idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        with db.read() as conn:
            assert shown(conn, "lock_timeout", "idle_in_transaction_session_timeout") == {
                "lock_timeout": "250ms",
                "idle_in_transaction_session_timeout": "2s",
            }
            assert shown(conn, "statement_timeout", "tcp_keepalives_idle") == defaults
            with client_socket(conn) as sock:
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == default_idle
    finally:
        db.dispose()
        plain.dispose()


def test_a_setting_the_url_gives_wins() -> None:
    url = sa.make_url(
        "postgresql+psycopg://u@db/credits?options=-c%20lock_timeout%3D9s&keepalives_idle=99"
    )
    parameters = database.postgresql_parameters(url, Timeouts())
    assert parameters["options"].startswith("-c lock_timeout=5000 ")
    assert parameters["options"].endswith(" -c lock_timeout=9s")  # the later one counts
    assert "keepalives_idle" not in parameters  # the URL's is used
    assert parameters["keepalives_interval"] == 10
    named = url.update_query_dict({"application_name": "billing"})
    assert "application_name" not in database.postgresql_parameters(named, Timeouts())


@pytest.mark.parametrize(
    "timeouts",
    [
        {"lock": 0},
        {"lock": -1},
        {"idle_in_transaction": -1},
        {"statement": -0.5},
        {"keepalive": -1},
    ],
)
def test_timeouts_refuse_what_bounds_nothing(timeouts: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="timeout"):
        Timeouts(**timeouts)  # type: ignore[arg-type]


def test_the_sqlite_busy_timeout_is_the_lock_timeout(sqlite_url: str) -> None:
    db = Database(sqlite_url, timeouts=Timeouts(lock=1.5))
    try:
        with db.read() as conn:
            assert pragma(conn, "busy_timeout") == 1_500
    finally:
        db.dispose()


def test_a_keyed_lock_not_granted_within_its_timeout_raises_lock_timeout() -> None:
    locks = KeyedLocks()
    entered, leave = threading.Event(), threading.Event()
    holder = threading.Thread(target=_holding, args=(locks, "acme", entered, leave))
    holder.start()
    try:
        assert entered.wait(timeout=30)
        with (
            pytest.raises(LockTimeout, match=r"the turn on 'acme' was not granted within 0\.05 s"),
            locks.locked("acme", timeout=0.05),
        ):
            pytest.fail("the lock was taken while another thread had it")
        assert locks.waiting("acme") == 1  # the one that gave up is gone
        with locks.locked("globex", timeout=0.05):
            pass  # another key is free
    finally:
        leave.set()
        holder.join(timeout=30)
    with locks.locked("acme", timeout=0.05):
        assert locks.waiting("acme") == 1


def test_a_sqlite_writer_waits_for_the_process_s_writer_up_to_the_lock_timeout(
    sqlite_url: str,
) -> None:
    db = Database(sqlite_url, timeouts=Timeouts(lock=0.1))
    writing, done = threading.Event(), threading.Event()

    def write() -> None:
        with db.write():
            writing.set()
            assert done.wait(timeout=30)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert writing.wait(timeout=30)
        with pytest.raises(LockTimeout, match="the database's write lock"), db.write():
            pytest.fail("two threads of one process wrote at once")
    finally:
        done.set()
        writer.join(timeout=30)
    with db.write() as conn:  # free again
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    db.dispose()


# What a failed transaction means, from errors provoked for real.

Verdict = tuple[bool, bool]
"""(``transient``, ``ended_lock_wait``) of an error."""
RUN_AGAIN: Verdict = (True, False)
LOCK_WAIT: Verdict = (False, True)
NEITHER: Verdict = (False, False)


def verdict(error: BaseException) -> Verdict:
    return database.transient(error), database.ended_lock_wait(error)


@pytest.fixture
def rows(postgresql_url: str) -> Iterator[sa.Engine]:
    """An engine on a schema with a table of two rows, ids 1 and 2."""
    engine = sa.create_engine(postgresql_url, pool_size=3)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1, 0), (2, 0)")
    yield engine
    engine.dispose()


def test_a_postgresql_deadlock_is_run_again(rows: sa.Engine) -> None:
    first, second = rows.connect(), rows.connect()
    failures: list[BaseException] = []
    try:
        first.begin()
        second.begin()
        first.exec_driver_sql("UPDATE t SET n = 1 WHERE id = 1")
        second.exec_driver_sql("UPDATE t SET n = 1 WHERE id = 2")

        def cross(conn: sa.Connection, row: int) -> None:
            try:
                conn.exec_driver_sql(f"UPDATE t SET n = 2 WHERE id = {row}")
            except sa.exc.DBAPIError as error:
                failures.append(error)
                conn.rollback()

        crossing = threading.Thread(target=cross, args=(first, 2))
        crossing.start()
        cross(second, 1)  # PostgreSQL ends one of the two after its deadlock_timeout
        crossing.join(timeout=30)
    finally:
        first.close()
        second.close()
    assert len(failures) == 1
    assert getattr(failures[0], "orig", None).sqlstate == "40P01"  # type: ignore[union-attr]
    assert verdict(failures[0]) == RUN_AGAIN


def test_a_postgresql_serialization_failure_is_run_again(rows: sa.Engine) -> None:
    with (
        rows.connect().execution_options(isolation_level="REPEATABLE READ") as reader,
        reader.begin(),
    ):
        assert reader.exec_driver_sql("SELECT n FROM t WHERE id = 1").scalar() == 0
        with rows.begin() as writer:
            writer.exec_driver_sql("UPDATE t SET n = 1 WHERE id = 1")
        with pytest.raises(sa.exc.DBAPIError) as raised:
            reader.exec_driver_sql("UPDATE t SET n = 2 WHERE id = 1")
    assert raised.value.orig.sqlstate == "40001"  # type: ignore[union-attr]
    assert verdict(raised.value) == RUN_AGAIN


def test_a_postgresql_session_ended_idle_in_its_transaction_is_run_again(
    postgresql_url: str,
) -> None:
    """The timeout's own work: the session is ended, its transaction rolled back."""
    db = Database(postgresql_url, timeouts=Timeouts(idle_in_transaction=0.05))

    def idle_in_a_transaction() -> None:
        with db.write() as conn:
            conn.exec_driver_sql("SELECT 1")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # until PostgreSQL ends the session
                time.sleep(0.05)
                conn.exec_driver_sql("SELECT 1")

    try:
        with pytest.raises(sa.exc.DBAPIError) as raised:
            idle_in_a_transaction()
    finally:
        db.dispose()
    assert raised.value.orig.sqlstate == "25P03"  # type: ignore[union-attr]
    assert verdict(raised.value) == RUN_AGAIN


def test_a_postgresql_lock_timeout_is_a_lock_wait_ended(
    rows: sa.Engine, postgresql_url: str
) -> None:
    db = Database(postgresql_url, timeouts=Timeouts(lock=0.05))
    try:
        with rows.begin() as holder:
            holder.exec_driver_sql("SELECT n FROM t WHERE id = 1 FOR UPDATE")
            with (
                pytest.raises(LockTimeout, match="a lock was not granted") as raised,
                db.write() as conn,
            ):
                conn.exec_driver_sql("SELECT n FROM t WHERE id = 1 FOR UPDATE")
    finally:
        db.dispose()
    cause = raised.value.__cause__
    assert isinstance(cause, sa.exc.DBAPIError)
    assert cause.orig.sqlstate == "55P03"  # type: ignore[union-attr]
    assert verdict(cause) == LOCK_WAIT


def test_a_postgresql_statement_timeout_is_neither(postgresql_url: str) -> None:
    db = Database(postgresql_url, timeouts=Timeouts(statement=0.05))
    try:
        with pytest.raises(sa.exc.DBAPIError) as raised, db.write() as conn:
            conn.exec_driver_sql("SELECT pg_sleep(30)")
    finally:
        db.dispose()
    assert raised.value.orig.sqlstate == "57014"  # type: ignore[union-attr]
    assert verdict(raised.value) == NEITHER


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[tuple[str, sqlite3.Connection]]:
    """A SQLite file in WAL mode with a table ``t`` of two rows, and a connection to it."""
    path = str(tmp_path / "t.db")
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (n INTEGER)")
    conn.execute("INSERT INTO t VALUES (0), (0)")
    yield path, conn
    conn.close()


def test_sqlite_busy_is_a_lock_wait_ended(sqlite_file: tuple[str, sqlite3.Connection]) -> None:
    path, writer = sqlite_file
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    writer.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as raised:
        other.execute("BEGIN IMMEDIATE")
    other.close()
    assert raised.value.sqlite_errorname == "SQLITE_BUSY"
    assert verdict(raised.value) == LOCK_WAIT


def test_sqlite_busy_through_the_database_is_lock_timeout(sqlite_url: str) -> None:
    db = Database(sqlite_url, timeouts=Timeouts(lock=0.05))
    path = sa.make_url(sqlite_url).database
    assert path is not None
    with db.write():
        pass  # the file exists
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(LockTimeout, match="a lock was not granted") as raised, db.write():
            pytest.fail("two connections held the write lock")
    finally:
        other.close()
        db.dispose()
    assert verdict(raised.value.__cause__ or raised.value) == LOCK_WAIT


def test_a_stale_sqlite_snapshot_is_run_again(
    sqlite_file: tuple[str, sqlite3.Connection],
) -> None:
    path, writer = sqlite_file
    reader = sqlite3.connect(path, isolation_level=None, timeout=0)
    reader.execute("BEGIN")
    assert reader.execute("SELECT n FROM t").fetchall() == [(0,), (0,)]
    writer.execute("UPDATE t SET n = 1")
    with pytest.raises(sqlite3.OperationalError) as raised:
        reader.execute("UPDATE t SET n = 2")
    reader.close()
    assert raised.value.sqlite_errorname == "SQLITE_BUSY_SNAPSHOT"
    assert verdict(raised.value) == RUN_AGAIN


def test_a_sqlite_table_locked_by_its_own_connection_is_run_again(
    sqlite_file: tuple[str, sqlite3.Connection],
) -> None:
    _, conn = sqlite_file
    reading = conn.execute("SELECT n FROM t")
    reading.fetchone()  # the statement still has a row to read
    with pytest.raises(sqlite3.OperationalError) as raised:
        conn.execute("DROP TABLE t")
    reading.close()
    assert raised.value.sqlite_errorname == "SQLITE_LOCKED"
    assert verdict(raised.value) == RUN_AGAIN


def test_a_read_only_sqlite_database_is_neither(
    sqlite_file: tuple[str, sqlite3.Connection],
) -> None:
    path, _ = sqlite_file
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as raised:
        read_only.execute("UPDATE t SET n = 1")
    read_only.close()
    assert raised.value.sqlite_errorname == "SQLITE_READONLY"
    assert verdict(raised.value) == NEITHER


@pytest.mark.usefixtures("rows")
def test_a_session_stuck_in_a_transaction_after_a_pipeline_is_ended_by_a_lock_waiter(
    postgresql_url: str,
) -> None:
    """A session that holds a lock and says nothing after a pipelined round trip, as a
    process that stopped there: PostgreSQL's idle-in-transaction timeout is off for it
    (psycopg's Flush after the Sync), so the first wait for its lock that runs out after
    the timeout ends it, and the next wait succeeds."""
    db = Database(postgresql_url, timeouts=Timeouts(lock=0.1, idle_in_transaction=0.2))
    other = Database(postgresql_url)  # another process of the application
    stuck = other.engine.connect()
    try:
        stuck.begin()
        dbapi_connection = stuck.connection.dbapi_connection
        assert dbapi_connection is not None
        with dbapi_connection.pipeline():
            dbapi_connection.execute("SET LOCAL idle_in_transaction_session_timeout = 200")
            dbapi_connection.execute("SELECT n FROM t WHERE id = 1 FOR UPDATE")
        deadline = time.monotonic() + 30
        while True:  # busy until the stuck session has been idle for the timeout
            try:
                with db.write() as conn:
                    conn.exec_driver_sql("UPDATE t SET n = 1 WHERE id = 1")
                break
            except LockTimeout:
                assert time.monotonic() < deadline, "the stuck session was never ended"
        with pytest.raises(sa.exc.DBAPIError) as ended:
            stuck.exec_driver_sql("SELECT 1")
        assert ended.value.connection_invalidated
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT n FROM t WHERE id = 1").scalar() == 1
    finally:
        stuck.close()
        other.dispose()
        db.dispose()


def test_a_single_statement_read_runs_without_a_transaction_around_it(
    postgresql_url: str,
) -> None:
    db = Database(postgresql_url)
    query = "SELECT xact_start = query_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    try:
        with db.read_one() as conn:
            alone = conn.exec_driver_sql(query).scalar_one()
        with db.read() as conn:
            in_a_transaction = conn.exec_driver_sql(query).scalar_one()
    finally:
        db.dispose()

    assert alone is True  # the statement's own transaction
    assert in_a_transaction is False  # begun by a BEGIN before it
