"""A live ``creditmeter serve`` per engine, started once per module, and clients of it.

The server is a subprocess on a free port, as an operator would run it, with
``CREDITMETER_ADMIN_KEY`` set; the tests seed it through the client with that key. Each
test makes accounts of its own (``fresh_id``), so tests share the server, not their data.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import sqlalchemy as sa

from creditmeter import CreditMeter
from creditmeter.client import CreditMeterClient
from tests.conftest import ENGINES, POSTGRES_URL, postgres_schema_url

ADMIN_KEY = "client-test-admin-key-of-32-characters-or-more"
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """A ``creditmeter serve`` process: its URL, database and log file."""

    url: str
    database_url: str
    log: Path
    process: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(
    database_url: str,
    log: Path,
    *args: str,
    admin_key: str = ADMIN_KEY,
    env: Mapping[str, str] | None = None,
) -> Server:
    """``creditmeter serve`` on a free port, once it answers ``/healthz``; ``env`` adds
    to the environment it inherits."""
    port = free_port()
    env = {
        **os.environ,
        "CREDITMETER_ADMIN_KEY": admin_key,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [sys.executable, "-m", "creditmeter.cli.main", "serve", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--database-url", database_url, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(f"http://127.0.0.1:{port}", database_url, log, process)
    try:
        wait_until_healthy(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"creditmeter serve exited {server.process.returncode}:\n{server.output()}")
        try:
            if httpx2.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"creditmeter serve did not answer in {STARTUP_SECONDS} s:\n{server.output()}")


@pytest.fixture(scope="module")
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database for the module, on the engine of the parameter."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('served') / 'creditmeter.db'}"
        return
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "module_database_url" in metafunc.fixturenames:
        metafunc.parametrize("module_database_url", ENGINES, indirect=True, scope="module")


@pytest.fixture(scope="module")
def server(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("log") / "serve.log"
    served = start_server(module_database_url, log, "--payments", "dev")
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def admin(server: Server) -> Iterator[CreditMeterClient]:
    """A client with the superadmin key of the environment."""
    with CreditMeterClient(server.url, ADMIN_KEY) as client:
        yield client


@pytest.fixture
def library(server: Server) -> Iterator[CreditMeter]:
    """The library on the server's own database, to compare what the client returns with
    what the library returns."""
    with CreditMeter(server.database_url, migrate=False) as meter:
        yield meter


@pytest.fixture
def fresh_id() -> str:
    """An account id no other test uses."""
    return f"acct-{uuid.uuid4().hex[:10]}"
