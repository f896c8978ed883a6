"""Fixtures shared by every test: a database on each engine and a clock the test moves.

Every storage and library test runs twice, on SQLite (a fresh file) and on PostgreSQL (a
fresh schema in the database named by ``CREDITMETER_TEST_POSTGRES_URL``, by default the
local server's ``test`` database). PostgreSQL being unreachable is a failure, not a skip.
Each process of a parallel run (pytest-xdist, ``scripts/test``) has a database of its own,
that one's name suffixed by the process's and the run's (``test_gw0_1f2e3d4c`` …): made
when its session starts and dropped when it ends, so that nothing database-wide (advisory
locks, sessions ended by ``pg_stat_activity``, ``current_database()``) is shared between
processes, nor between two runs on one server.

``database_url`` is an empty database; ``migrated_url`` (and so ``meter``) one already at
the head revision, made cheaply from a template migrated once per session: a copy of the
file on SQLite, the template's statements replayed into the fresh schema on PostgreSQL
(tests/templates.py). A test asks for one or the other, never both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from sqlalchemy.pool import NullPool

from creditmeter import CreditMeter
from creditmeter.store import grants as grants_store
from tests import templates

SHARED_POSTGRES_URL = os.environ.get(
    "CREDITMETER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
"""The database a run without pytest-xdist uses, and where each xdist process makes its own."""
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""This process's name in a pytest-xdist run (``gw0`` …), or None outside one."""
XDIST_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:8]
"""The first characters of the pytest-xdist run's id, the same in each of its processes."""


def process_postgres_url(shared: str, worker: str | None, run: str) -> str:
    """The URL of this process's database: ``shared``'s, or its name suffixed by
    ``worker`` and ``run``."""
    if worker is None:
        return shared
    url = sa.make_url(shared)
    database = f"{url.database}_{worker}_{run}"
    return url.set(database=database).render_as_string(hide_password=False)


POSTGRES_URL = process_postgres_url(SHARED_POSTGRES_URL, XDIST_WORKER, XDIST_RUN)
ENGINES = ("sqlite", "postgresql")
MOVED_CLOCK = Path(__file__).parent / "moved_clock"
ENGINE_FIXTURES = {"sqlite": ("sqlite_", "migrated_sqlite_"), "postgresql": ("postgres",)}
"""How the names of the fixtures of one engine alone begin."""

LONG_SCALE = 20
"""How much ``--reliability-long`` multiplies the operation budget and the kills by."""
DEFAULT_SEED = 2026


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engines",
        default=",".join(ENGINES),
        help="the engines to test on, comma-separated (default: sqlite,postgresql); "
        "--engines sqlite is the fast loop, with no PostgreSQL server needed",
    )
    parser.addoption(
        "--restart-postgres",
        action="store_true",
        default=False,
        help="also run the tests that restart the local PostgreSQL server (CI does)",
    )
    parser.addoption(
        "--today",
        metavar="DATE",
        help="run with this process's clock moved to DATE (ISO; a date keeps the time "
        "of day) and ticking: for tests whose outcome could depend on the date",
    )
    parser.addoption(
        "--grant-load-cap",
        type=int,
        metavar="N",
        help="load at most N live grants with an account's lock (default: the library's): "
        "0 runs every use case through the index reads meant for accounts with many grants",
    )
    group = parser.getgroup("reliability", "fault-injection tests")
    group.addoption(
        "--reliability-long",
        action="store_true",
        default=False,
        help=f"run the fault-injection tests {LONG_SCALE} times longer, with as many more faults",
    )
    group.addoption(
        "--reliability-seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the operations and of the faults (default {DEFAULT_SEED})",
    )


def pytest_configure(config: pytest.Config) -> None:
    engines = selected_engines(config)
    if not engines or not set(engines) <= set(ENGINES):
        raise pytest.UsageError(f"--engines takes some of {', '.join(ENGINES)}")
    today = config.getoption("today")
    if today is not None and not distributes(config):
        move_clocks(moved_now(today))
    cap = config.getoption("grant_load_cap")
    if cap is not None:
        grants_store.LOAD_CAP = cap


def pytest_sessionstart(session: pytest.Session) -> None:
    """In an xdist process that tests on PostgreSQL, make its own database, afresh."""
    if XDIST_WORKER is not None and "postgresql" in selected_engines(session.config):
        with _shared_postgres() as conn:
            database = _process_database(conn)
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {database}")
        session.config.stash[_DATABASE_MADE] = True


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop the xdist process's database, ending any session still on it."""
    if session.config.stash.get(_DATABASE_MADE, False):
        with _shared_postgres() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {_process_database(conn)} WITH (FORCE)")


_DATABASE_MADE = pytest.StashKey[bool]()


@contextmanager
def _shared_postgres() -> Iterator[sa.Connection]:
    engine = sa.create_engine(SHARED_POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _process_database(conn: sa.Connection) -> str:
    name = sa.make_url(POSTGRES_URL).database
    assert name is not None
    return conn.dialect.identifier_preparer.quote(name)


def move_clocks(to: datetime) -> None:
    """Move this process's clock to ``to``, ticking, and that of every Python process it
    starts (tests/moved_clock/sitecustomize.py) by the same offset."""
    os.environ["CREDITMETER_TEST_CLOCK_OFFSET"] = str(to.timestamp() - time.time())
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(MOVED_CLOCK), os.environ.get("PYTHONPATH")])
    )
    time_machine.travel(to, tick=True).start()


def distributes(config: pytest.Config) -> bool:
    """Whether this process hands the tests to xdist processes (``-n``), which run them
    (and move their own clocks) but must not start with its moved clock."""
    return bool(getattr(config.option, "numprocesses", None))


def selected_engines(config: pytest.Config) -> list[str]:
    return [e.strip() for e in str(config.getoption("engines")).split(",") if e.strip()]


def moved_now(today: str) -> datetime:
    """``today`` as an aware time: a date alone keeps the current time of day."""
    try:
        moved = datetime.fromisoformat(today)
    except ValueError as error:
        raise pytest.UsageError(f"--today: {error}") from None
    if len(today) <= len("YYYY-MM-DD"):
        moved = datetime.combine(moved.date(), datetime.now(UTC).time())
    return moved if moved.tzinfo else moved.replace(tzinfo=UTC)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the engines not asked for, and the PostgreSQL restarts unless asked."""
    skipped = set(ENGINES) - set(selected_engines(config))
    restarts = config.getoption("restart_postgres")
    kept, left_out = [], []
    for item in items:
        if uses_engine(item, skipped) or (
            not restarts and item.get_closest_marker("restarts_postgres")
        ):
            left_out.append(item)
        else:
            kept.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked serial fails in an xdist process: beside others it would disturb them
    (or they it), as restarting PostgreSQL would. ``scripts/test`` runs them alone."""
    if XDIST_WORKER is not None and item.get_closest_marker("serial"):
        pytest.fail(
            'marked serial: it runs alone, not with -n (pass -m "not serial"); '
            "scripts/test runs it after the others",
            pytrace=False,
        )


def uses_engine(item: pytest.Item, engines: set[str]) -> bool:
    """Whether the test runs on one of ``engines``: by a parameter naming it, or by asking
    for a fixture of that engine's alone (``postgresql_url``, ``migrated_sqlite_url`` …)."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and any(
        isinstance(value, str) and value in engines for value in callspec.params.values()
    ):
        return True
    prefixes = tuple(prefix for engine in engines for prefix in ENGINE_FIXTURES[engine])
    return any(name.startswith(prefixes) for name in getattr(item, "fixturenames", ()))


class Clock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))


def postgres_schema_url(schema: str) -> str:
    url = sa.make_url(POSTGRES_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    """The engine of a test that asks for a database: ``sqlite``, then ``postgresql``."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def postgresql_admin() -> Iterator[sa.Engine]:
    """The session's connections for creating and dropping schemas. Pre-ping: a test may
    restart the server (tests/reliability/test_postgres_restart.py)."""
    admin = sa.create_engine(POSTGRES_URL, pool_size=1, pool_pre_ping=True)
    try:
        yield admin
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgresql_template(postgresql_admin: sa.Engine) -> Iterator[templates.PostgresqlTemplate]:
    """What migrating an empty schema sends, recorded once per session from a template
    schema (dropped at the end of the session)."""
    with templates.postgresql_schema(postgresql_admin, prefix="template") as schema:
        statements = templates.record_migration(postgres_schema_url(schema), schema)
        templates.check_replay(postgresql_admin, schema, statements)
        yield templates.PostgresqlTemplate(postgresql_admin, statements)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session, to be copied."""
    return templates.migrate_sqlite_template(tmp_path_factory.mktemp("template") / "creditmeter.db")


@pytest.fixture
def postgresql_url(postgresql_admin: sa.Engine) -> Iterator[str]:
    """A URL whose connections see only a new, empty schema, dropped afterwards."""
    with templates.postgresql_schema(postgresql_admin) as schema:
        yield postgres_schema_url(schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL of a new, empty SQLite file."""
    return f"sqlite:///{tmp_path / 'creditmeter.db'}"


@pytest.fixture
def migrated_postgresql_url(postgresql_template: templates.PostgresqlTemplate) -> Iterator[str]:
    """Like ``postgresql_url``, but the schema is migrated: the template's statements
    replayed into it."""
    template = postgresql_template
    with templates.postgresql_schema(template.admin, template.statements) as schema:
        yield postgres_schema_url(schema)


@pytest.fixture
def migrated_sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """Like ``sqlite_url``, but the file is migrated: a copy of the template."""
    return templates.copy_sqlite_template(sqlite_template, tmp_path / "migrated" / "creditmeter.db")


def _one_database(request: pytest.FixtureRequest, other: str) -> None:
    if other in request.fixturenames:
        pytest.fail(
            f"{request.node.nodeid} asks for both database_url and migrated_url (perhaps "
            "through meter): they are two databases; ask for migrated_url alone",
            pytrace=False,
        )


@pytest.fixture
def database_url(request: pytest.FixtureRequest, engine_name: str) -> str:
    """A URL of an empty database, once per engine."""
    _one_database(request, "migrated_url")
    url: str = request.getfixturevalue(f"{engine_name}_url")
    return url


@pytest.fixture
def migrated_url(request: pytest.FixtureRequest, engine_name: str) -> str:
    """A URL of a database migrated to the head revision, once per engine."""
    _one_database(request, "database_url")
    url: str = request.getfixturevalue(f"migrated_{engine_name}_url")
    return url


@pytest.fixture
def meter(migrated_url: str, clock: Clock) -> Iterator[CreditMeter]:
    with CreditMeter(migrated_url, clock=clock) as m:
        yield m
