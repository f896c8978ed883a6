"""What the server's PostgreSQL sessions are doing, sampled from ``pg_stat_activity``.

The servers connect with an ``application_name`` of their own (see
``benchmarks.server.schema_url``), so their sessions can be told from anyone else's. Each
sample classifies every such session: ``idle`` (no transaction: the server is elsewhere),
``idle in transaction`` (a transaction open while the server's Python works between two
statements, holding any row lock it took), ``active`` (PostgreSQL executing) or waiting on
a lock (``Lock:tuple``, ``Lock:transactionid``: another transaction holds the row).
"""

from __future__ import annotations

import threading
from collections import Counter

import psycopg
import sqlalchemy as sa

from benchmarks.server import POSTGRES_URL

INTERVAL = 0.05
MAX_SAMPLES = 10_000
QUERY = (
    "SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity "
    "WHERE application_name = %s AND pid <> pg_backend_pid()"
)
PIDS = (
    "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
    "AND (application_name = %s OR backend_type <> 'client backend')"
)


def _conninfo() -> str:
    url = sa.make_url(POSTGRES_URL)
    parts = {
        "host": url.host or "127.0.0.1",
        "port": str(url.port or 5432),
        "user": url.username or "postgres",
        "dbname": url.database or "postgres",
    }
    if url.password:
        parts["password"] = url.password
    return " ".join(f"{k}={v}" for k, v in parts.items())


def session_pids(application_name: str) -> set[int]:
    """The PostgreSQL processes working for ``application_name``: its sessions, and the
    server's background processes (WAL writer, checkpointer, …) that everyone shares."""
    try:
        with psycopg.connect(_conninfo(), autocommit=True) as conn:
            return {row[0] for row in conn.execute(PIDS, (application_name,))}
    except psycopg.Error:
        return set()


class Activity:
    """Samples every INTERVAL seconds between :meth:`start` and :meth:`stop` (at most
    MAX_SAMPLES), in a thread with its own connection."""

    def __init__(self, application_name: str) -> None:
        self.application_name = application_name
        self.states: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: str | None = None
        self.pids: set[int] = set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._sample, name="pg-activity", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _sample(self) -> None:
        try:
            with psycopg.connect(_conninfo(), autocommit=True) as conn:
                while not self._stop.is_set() and self.samples < MAX_SAMPLES:
                    rows = conn.execute(QUERY, (self.application_name,)).fetchall()
                    for pid, state, wait_type, wait in rows:
                        self.pids.add(pid)
                        if wait_type in ("Lock", "LWLock", "IO"):
                            self.states[f"{wait_type}:{wait}"] += 1
                        else:
                            self.states[state or "?"] += 1
                    self.samples += 1
                    self._stop.wait(INTERVAL)
        except psycopg.Error as error:
            self.failure = str(error).strip()

    def text(self) -> str:
        """The server's sessions by what they were doing, on average over the samples."""
        if self.failure is not None:
            return f"pg_stat_activity not sampled: {self.failure}"
        if not self.samples:
            return "pg_stat_activity: no samples"
        total = sum(self.states.values())
        sessions = total / self.samples
        shares = ", ".join(
            f"{name} {100 * count / total:.0f}%" for name, count in self.states.most_common(6)
        )
        text = f"server sessions in PostgreSQL (avg {sessions:.1f}): {shares}"
        return text + f"; {len(self.pids)} distinct sessions seen"
