"""A fresh PostgreSQL schema, seeded through the library, and ``creditmeter serve`` on it.

The server is a subprocess as an operator would run it (``python -m creditmeter.cli.main
serve``), with the sweeper off and its JSON logs in a file; optionally inside a network
namespace (``ip netns exec``), or running another checkout's code (its ``src`` first on
``PYTHONPATH``). Everything made here is removed by the context managers' exits, whatever
happened.

With another checkout's code, the schema is seeded and verified by that code too, in a
subprocess: ``python -m benchmarks.server seed URL ACCOUNT…`` (prints the service key) and
``python -m benchmarks.server verify URL`` (prints the violations, one a line).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import sqlalchemy as sa

from benchmarks.load import listening
from creditmeter import CreditMeter

POSTGRES_URL = os.environ.get(
    "CREDITMETER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SOCKET_DIR = "/var/run/postgresql"
ADMIN_KEY = "bench-admin-key-of-32-characters-or-more"
STARTUP_SECONDS = 60.0
FEATURE = "bench.call"
PLAN = "bench"
ALLOWANCE = 1_000_000
PURCHASED = 10**12


def schema_url(schema: str, *, unix_socket: bool = False) -> str:
    """The URL of ``schema`` in the benchmark database, over TCP or the Unix socket; its
    sessions are named after the schema (``application_name``)."""
    url = sa.make_url(POSTGRES_URL)
    query: dict[str, str] = {"options": f"-csearch_path={schema}", "application_name": schema}
    if unix_socket:
        url = url.set(host=None, port=None)
        query["host"] = SOCKET_DIR
    return url.update_query_dict(query).render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A new, empty schema's name, dropped at the end."""
    name = f"cmbench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
        try:
            yield name
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
    finally:
        admin.dispose()


@dataclass(frozen=True)
class Seeded:
    accounts: list[str]
    service_key: str


def seed(url: str, accounts: list[str]) -> Seeded:
    """Migrate, then the price book, a plan with a monthly allowance, the accounts (each
    with purchased credits too) and a service key."""
    with CreditMeter(url) as meter:
        meter.put_feature(FEATURE, rates={"tokens": 1}, name="Benchmark call")
        meter.put_plan(PLAN, allowances={"*": ALLOWANCE}, name="Benchmark")
        for account in accounts:
            meter.create_account(account, plan=PLAN)
            meter.grant(account, PURCHASED, source="purchase", reason="benchmark credits")
        _, secret = meter.create_api_key("service", name="benchmark")
    return Seeded(accounts, secret)


def code_env(src: Path | None) -> dict[str, str]:
    """The environment for a subprocess running the code in ``src`` (another checkout's
    ``src`` directory) with this checkout's benchmarks; this process's own without it."""
    env = dict(os.environ)
    if src is not None:
        root = Path(__file__).resolve().parent.parent
        env["PYTHONPATH"] = os.pathsep.join((str(src.resolve()), str(root)))
    return env


def seed_with(src: Path, url: str, accounts: list[str]) -> Seeded:
    """:func:`seed`, by the code in ``src``."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.server", "seed", url, *accounts],
        env=code_env(src),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"seeding with {src} failed:\n{done.stderr[-2000:]}")
    return Seeded(accounts, done.stdout.strip().splitlines()[-1])


def verify_with(src: Path, url: str) -> list[str]:
    """``verify``'s violations, found by the code in ``src``."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.server", "verify", url],
        env=code_env(src),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"verify with {src} failed:\n{done.stderr[-2000:]}")
    return done.stdout.splitlines()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """A running ``creditmeter serve``: where it answers, its process and its log."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def output(self, tail: int = 4000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-tail:]

    def stop(self) -> None:
        """SIGTERM to the server's own process group (the uvicorn supervisor and its
        workers), SIGKILL to that group if it has not stopped in 15 s."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


@contextlib.contextmanager
def serving(
    database_url: str,
    *,
    workers: int,
    host: str = "127.0.0.1",
    port: int | None = None,
    namespace: str | None = None,
    pool_size: int | None = None,
    src: Path | None = None,
) -> Iterator[Server]:
    """``creditmeter serve --workers N`` on the database, once it answers ``/healthz``;
    stopped at the end. In ``namespace``, it listens on ``host`` there. ``pool_size``: the
    connection pool of each worker (CREDITMETER_POOL_SIZE; the server's default otherwise).
    ``src``: the ``src`` directory of another checkout, whose code the server runs."""
    port = port or free_port()
    env = {
        **code_env(src),
        "CREDITMETER_ADMIN_KEY": ADMIN_KEY,
        "CREDITMETER_SWEEP_INTERVAL": "0",
        "PYTHONUNBUFFERED": "1",
    }
    if pool_size is not None:
        env["CREDITMETER_POOL_SIZE"] = str(pool_size)
    command = [sys.executable, "-m", "creditmeter.cli.main", "serve", "--no-migrate"]
    command += ["--host", host, "--port", str(port), "--workers", str(workers)]
    command += ["--database-url", database_url, "--log-format", "json"]
    if namespace is not None:
        command = ["ip", "netns", "exec", namespace, *command]
    with _running(command, env, host, port, workers) as server:
        yield server


@contextlib.contextmanager
def floor_serving(*, workers: int) -> Iterator[Server]:
    """``benchmarks.floor``'s empty endpoints with ``workers`` workers, on 127.0.0.1."""
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.floor", "--port", str(port)]
    command += ["--workers", str(workers)]
    with _running(command, dict(os.environ), "127.0.0.1", port, workers) as server:
        yield server


@contextlib.contextmanager
def _running(
    command: list[str], env: dict[str, str], host: str, port: int, workers: int
) -> Iterator[Server]:
    logs = Path(tempfile.mkdtemp(prefix="cmbench-serve-"))
    log = logs / "serve.log"
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        server = Server(host, port, process, log)
        try:
            _wait_until_healthy(server, workers)
            yield server
        finally:
            server.stop()
    finally:
        log.unlink(missing_ok=True)
        logs.rmdir()


def _wait_until_healthy(server: Server, workers: int) -> None:
    """Until the server answers and each of its workers listens on a socket of its own
    (one answering is not enough: clients connecting meanwhile would all go to it)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited {server.process.returncode}:\n{server.output()}")
        try:
            answer = httpx2.get(f"{server.url}/healthz", timeout=1, trust_env=False)
            if answer.status_code == 200 and listening(server.process.pid, server.port) >= workers:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server did not answer in {STARTUP_SECONDS} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server")
    commands = parser.add_subparsers(dest="command", required=True)
    seeding = commands.add_parser("seed", help="seed the schema; print the service key")
    seeding.add_argument("url")
    seeding.add_argument("accounts", nargs="+")
    commands.add_parser("verify", help="print verify's violations").add_argument("url")
    args = parser.parse_args(argv)
    if args.command == "seed":
        print(seed(args.url, args.accounts).service_key)
    else:
        with CreditMeter(args.url, migrate=False) as meter:
            for violation in meter.verify():
                print(violation)


if __name__ == "__main__":
    main()
