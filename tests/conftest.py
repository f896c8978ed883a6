"""Fixtures shared by every test: a database on each engine and a clock the test moves.

Every storage and library test runs twice, on SQLite (a fresh file) and on PostgreSQL (a
fresh schema in the database named by ``CREDITMETER_TEST_POSTGRES_URL``, by default the
local server's ``test`` database). PostgreSQL being unreachable is a failure, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from creditmeter import CreditMeter

POSTGRES_URL = os.environ.get(
    "CREDITMETER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ENGINES = ("sqlite", "postgresql")

LONG_SCALE = 20
"""How much ``--reliability-long`` multiplies the operation budget and the kills by."""
DEFAULT_SEED = 2026


def pytest_addoption(parser: pytest.Parser) -> None:
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


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """A URL whose connections see only a new, empty schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield postgres_schema_url(schema)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'creditmeter.db'}"


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest) -> str:
    """A URL of an empty database, once per engine."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def meter(database_url: str, clock: Clock) -> Iterator[CreditMeter]:
    with CreditMeter(database_url, clock=clock) as m:
        yield m
