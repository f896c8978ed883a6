"""``pgbench`` baselines, each in a database of its own that is dropped afterwards: the
TPC-B-like script, and one row updated by every client (a hot account's bound)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from benchmarks.load import CpuMeter, CpuShares, shares
from benchmarks.pgactivity import session_pids
from benchmarks.server import POSTGRES_URL

PGBENCH = "/usr/bin/pgbench"
HOT_ROW_SCRIPT = "UPDATE hot SET v = v + 1 WHERE id = 1;\n"


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    transactions: int
    latency_ms: float
    command: str
    cpu: CpuShares
    """Cores used while it ran: ``postgres`` (its sessions and background processes),
    ``pgbench``, ``other`` (the rest of the machine)."""

    def text(self) -> str:
        cores = self.cpu.cores
        postgres = cores["postgres"] * 1000 / self.tps if self.tps else float("nan")
        return (
            f"{self.command}: {self.tps:,.0f} tps, {self.latency_ms:.2f} ms average; "
            f"PostgreSQL {postgres:.2f} CPU ms per transaction\n"
            f"        cores used: postgres {cores['postgres']:.2f}, pgbench {cores['client']:.2f}, "
            f"other {cores['other']:.2f}, idle {cores['idle']:.2f}"
        )


def _connection_args(via: tuple[str, int] | None = None) -> list[str]:
    """Where PostgreSQL is, or ``via`` that host and port (a relay in front of it, say)."""
    url = sa.make_url(POSTGRES_URL)
    host, port = via or (url.host or "127.0.0.1", url.port or 5432)
    return ["-h", host, "-p", str(port), "-U", url.username or "postgres"]


@contextlib.contextmanager
def own_database() -> Iterator[str]:
    """A new database's name, dropped at the end (with any sessions still on it)."""
    name = f"cmbench_pg_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            yield name
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.dispose()


def _run(args: list[str], timeout: float) -> str:
    done = subprocess.run(
        [PGBENCH, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout + done.stderr


def _measured(args: list[str], seconds: int, command: str) -> PgbenchResult:
    """pgbench for ``seconds``, its sessions named so that the CPU of theirs (and of
    PostgreSQL's background processes) is sampled while they run: from 1 s after the start
    to 0.5 s before the end."""
    name = f"cmbench_pgbench_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PGAPPNAME": name}
    with tempfile.TemporaryFile() as out:
        begun = time.monotonic()
        process = subprocess.Popen([PGBENCH, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            meter = CpuMeter({"pgbench": [process.pid]}, postgres=lambda: session_pids(name))
            time.sleep(min(1.0, seconds / 4))
            before = meter.snapshot()
            time.sleep(max(begun + seconds - 0.5 - time.monotonic(), 0.1))
            cpu = shares(before, meter.snapshot())
            process.wait(timeout=seconds + 60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)
        out.seek(0)
        output = out.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed:\n{output[-2000:]}")
    return _result(output, command, cpu)


def _result(output: str, command: str, cpu: CpuShares) -> PgbenchResult:
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    count = re.search(r"number of transactions actually processed: (\d+)", output)
    latency = re.search(r"latency average = ([0-9.]+) ms", output)
    if tps is None or count is None or latency is None:
        raise RuntimeError(f"cannot read pgbench's output:\n{output[-2000:]}")
    return PgbenchResult(float(tps[1]), int(count[1]), float(latency[1]), command, cpu)


def tpcb(
    clients: int, jobs: int, seconds: int, *, via: tuple[str, int] | None = None
) -> PgbenchResult:
    """``pgbench -i`` (scale 1) then the TPC-B-like script for ``seconds``, connecting
    ``via`` that host and port if given (the initialization connects directly)."""
    with own_database() as db:
        _run(["-i", "-q", "-s", "1", *_connection_args(), db], timeout=120)
        connection = _connection_args(via)
        args = ["-c", str(clients), "-j", str(jobs), "-T", str(seconds), *connection, db]
        return _measured(args, seconds, "pgbench " + " ".join(args[:6]))


def hot_row(clients: int, jobs: int, seconds: int) -> PgbenchResult:
    """Every client updating the same single row, ``UPDATE hot SET v = v + 1 WHERE id = 1``."""
    with own_database() as db:
        engine = sa.create_engine(sa.make_url(POSTGRES_URL).set(database=db))
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE hot (id integer PRIMARY KEY, v bigint)")
                conn.exec_driver_sql("INSERT INTO hot VALUES (1, 0)")
        finally:
            engine.dispose()
        with tempfile.TemporaryDirectory(prefix="cmbench-pgbench-") as folder:
            script = Path(folder) / "hot.sql"
            script.write_text(HOT_ROW_SCRIPT)
            args = ["-n", "-c", str(clients), "-j", str(jobs), "-T", str(seconds)]
            args += ["-f", str(script), *_connection_args(), db]
            shown = f"pgbench -c {clients} -j {jobs} -T {seconds} -f hot.sql"
            return _measured(args, seconds, shown)
