"""A server process frozen (``SIGSTOP``) while it holds an account's lock, on PostgreSQL.

Eight client threads send one-shot charges (``POST /v1/usage``) for one account, each
under an Idempotency-Key of its own and on a new connection, to ``creditmeter serve
--workers 2`` on a fresh schema, with short timeouts (lock 0.5 s, idle in transaction
1.5 s). The test stops one worker with ``SIGSTOP`` at a moment its session holds the
account's row lock, idle in its transaction (it stops a worker, looks, and lets it go on
until it catches one so), keeps it stopped, and checks that:

- the frozen worker's session is ended within seconds (a bounded wait), which releases
  the lock: by PostgreSQL's idle-in-transaction timeout, or, where psycopg's pipeline
  left that timer off, by the first request whose lock wait runs out after it;
- the other worker answers for the account while the first is still stopped: the
  requests that waited for the lock meanwhile got 503 ``busy`` with ``Retry-After``, and
  after the session ended charges were acknowledged again;
- nothing else came back: 200, or 503 ``busy`` / ``unavailable`` with ``Retry-After``
  (a request sent to the frozen worker is given up by its client after a few seconds);
- after ``SIGCONT``, every charge that was not acknowledged, sent again with its key, is
  resolved; the usage recorded is exactly the acknowledged usage (none lost, none
  twice), the balance is its start less what was acknowledged, and the books verify.

PostgreSQL itself is not touched. A SQLite database has no server to end a frozen
process's transaction: there a stopped writer keeps the write lock until it goes on, and
the others answer 503 ``busy`` after the lock timeout (tests/service/test_retries.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx2
import pytest
import sqlalchemy as sa

from creditmeter import CreditMeter
from tests.client.conftest import ADMIN_KEY, Server, start_server

THREADS: Final = 8
FEATURE: Final = "op"
GRANT: Final = 10_000_000
LOCK_TIMEOUT: Final = 0.5
IDLE_IN_TRANSACTION_TIMEOUT: Final = 1.5
CLIENT_TIMEOUT: Final = 2.5
"""Seconds a client waits for an answer: a request sent to the frozen worker is given up."""
WARM_UP: Final = 0.5
CATCH_ATTEMPTS: Final = 150
"""Stops tried: a group commit holds the lock for shorter spans than one use case at a
time did, so a stop lands inside one less often."""
LOOK_SECONDS: Final = 1.0
"""How long a stopped worker is looked at for a session holding the lock."""
ENDED_BOUND: Final = 10.0
"""Seconds by which the frozen worker's session must have been ended."""
FROZEN_AFTER: Final = 4.0
"""Seconds the worker stays stopped after its session was ended."""
AFTER_RESUME: Final = 1.0
RETRIES: Final = 20
POSTGRES_PORT: Final = 5432

pytestmark = pytest.mark.serial
"""Alone: catching a worker holding the lock, and the bounds above, are a matter of a few
hundred milliseconds of scheduling, which tests running beside it would take."""


@dataclass(frozen=True)
class Sent:
    """One request and what came of it; ``status`` is ``None`` when nothing answered."""

    key: str
    started: float
    finished: float
    status: int | None
    body: Any
    retry_after: str | None
    error: str

    @property
    def error_type(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            kind = self.body["error"].get("type")
            return kind if isinstance(kind, str) else None
        return None

    @property
    def acknowledged(self) -> bool:
        return self.status == 200

    @property
    def retryable(self) -> bool:
        """A 503 that says why and when to come back."""
        return (
            self.status == 503
            and self.error_type in ("busy", "unavailable")
            and self.retry_after == "1"
        )

    def __str__(self) -> str:
        answer = f"HTTP {self.status} {self.body!r}" if self.status else self.error
        return f"charge {self.key} at {self.started:.2f}-{self.finished:.2f}: {answer}"


@dataclass
class Charge:
    key: str
    requests: list[Sent] = field(default_factory=list)
    usage_id: str | None = None


class Load:
    """The client threads: each sends charges, each on a new connection, until told to
    stop."""

    def __init__(self, url: str, account: str) -> None:
        self.url = url
        self.account = account
        self.stop = threading.Event()
        self.charges: list[list[Charge]] = [[] for _ in range(THREADS)]

    def run(self, index: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            charge = Charge(f"t{index}-{n}-{uuid.uuid4().hex[:8]}")
            self.charges[index].append(charge)
            self.send(charge)

    def send(self, charge: Charge) -> Sent:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Idempotency-Key": charge.key}
        body = {"account": self.account, "feature": FEATURE, "credits": 1}
        started = time.monotonic()
        status, answer, retry_after, error = None, None, None, ""
        try:
            with httpx2.Client(base_url=self.url, timeout=CLIENT_TIMEOUT) as http:
                response = http.post("/v1/usage", json=body, headers=headers)
        except httpx2.TransportError as failure:
            error = type(failure).__name__
        else:
            status, retry_after = response.status_code, response.headers.get("Retry-After")
            try:
                answer = response.json()
            except ValueError:
                answer = response.text
        sent = Sent(charge.key, started, time.monotonic(), status, answer, retry_after, error)
        charge.requests.append(sent)
        if sent.acknowledged:
            charge.usage_id = sent.body["id"]
        return sent

    def all(self) -> list[Charge]:
        return [charge for mine in self.charges for charge in mine]


def worker_pids(server: Server) -> list[int]:
    """The server's worker processes (its children started by ``multiprocessing``)."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def postgres_ports(pid: int) -> set[int]:
    """The local ports of the TCP connections process ``pid`` has open to PostgreSQL."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    ports = set()
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == POSTGRES_PORT:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def both_workers_connected(server: Server) -> list[int]:
    """The two workers, once each has its application built (its first connection to
    PostgreSQL open)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = worker_pids(server)
        if len(workers) == 2 and all(postgres_ports(pid) for pid in workers):
            return workers
        time.sleep(0.05)
    pytest.fail(f"the two workers did not start:\n{server.output()}")


HOLDERS = sa.text(
    "SELECT a.pid, a.client_port FROM pg_stat_activity AS a JOIN pg_locks AS l"
    " ON l.pid = a.pid AND l.locktype = 'relation' AND l.mode = 'RowShareLock'"
    " AND l.relation = 'accounts'::regclass"
    " WHERE a.application_name = :application AND a.state = 'idle in transaction'"
)
"""The sessions of the server that hold an account's row lock (``SELECT … FOR UPDATE``)
and wait, idle in their transaction, for their process."""


@dataclass(frozen=True)
class Frozen:
    worker: int
    session: int
    """The PostgreSQL backend of the session that holds the lock."""
    at: float


def freeze_a_lock_holder(watcher: sa.Connection, application: str, workers: list[int]) -> Frozen:
    """Stop a worker while one of its sessions holds the account's lock: stop one, look
    for such a session of its, and let it go on if there is none, until one is caught."""
    for attempt in range(CATCH_ATTEMPTS):
        worker = workers[attempt % len(workers)]
        os.kill(worker, signal.SIGSTOP)
        stopped_at = time.monotonic()
        ports = postgres_ports(worker)
        while time.monotonic() < stopped_at + LOOK_SECONDS:
            for session, port in watcher.execute(HOLDERS, {"application": application}):
                if port in ports:
                    return Frozen(worker, session, stopped_at)
            time.sleep(0.02)
        os.kill(worker, signal.SIGCONT)
        time.sleep(0.2)
    pytest.fail(f"no worker was caught holding the lock in {CATCH_ATTEMPTS} attempts")


def wait_until_ended(watcher: sa.Connection, session: int, since: float) -> float:
    """When PostgreSQL ended ``session`` (its backend gone), looked at again and again."""
    alive = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
    while watcher.execute(alive, {"pid": session}).scalar_one():
        assert time.monotonic() < since + ENDED_BOUND, (
            f"the frozen worker's session was not ended in {ENDED_BOUND} s"
        )
        time.sleep(0.02)
    return time.monotonic()


@contextmanager
def watching(url: str) -> Iterator[sa.Connection]:
    engine = sa.create_engine(url, pool_size=1, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Timeline:
    frozen: Frozen
    ended_at: float
    resumed_at: float


def freeze_under(load: Load, url: str, application: str, workers: list[int]) -> Timeline:
    """Run the load, freeze a worker holding the lock, keep it frozen until some seconds
    after its session was ended, then let it go on; no worker is stopped when this
    returns or raises."""
    with ThreadPoolExecutor(THREADS, thread_name_prefix="load") as pool, watching(url) as watcher:
        threads = [pool.submit(load.run, i) for i in range(THREADS)]
        try:
            time.sleep(WARM_UP)
            frozen = freeze_a_lock_holder(watcher, application, workers)
            ended_at = wait_until_ended(watcher, frozen.session, frozen.at)
            time.sleep(FROZEN_AFTER)
            resumed_at = time.monotonic()
            os.kill(frozen.worker, signal.SIGCONT)
            time.sleep(AFTER_RESUME)
        finally:
            load.stop.set()
            for worker in workers:
                os.kill(worker, signal.SIGCONT)
        for thread in threads:
            thread.result()
    return Timeline(frozen, ended_at, resumed_at)


def seed(url: str) -> tuple[str, int]:
    account = f"acct-{uuid.uuid4().hex[:6]}"
    with CreditMeter(url) as meter:
        meter.put_feature(FEATURE, rates={"calls": 1})
        meter.create_account(account)
        meter.grant(account, GRANT, source="purchase")
        return account, meter.balance(account).available


def recorded_usage(meter: CreditMeter, account: str) -> list[str]:
    """The ids of every usage recorded for ``account``, page after page."""
    ids: list[str] = []
    cursor = None
    while True:
        page = meter.usage(account, limit=100, cursor=cursor)
        ids += [u.id for u in page.data]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


def named(url: str, application: str) -> str:
    """``url`` with its sessions named ``application``, to be told apart from others'."""
    parsed = sa.make_url(url).update_query_dict({"application_name": application})
    return parsed.render_as_string(hide_password=False)


def test_a_frozen_worker_holding_an_account_s_lock_stalls_it_for_seconds(
    postgresql_url: str, tmp_path: Path
) -> None:
    application = f"frozen-{uuid.uuid4().hex[:8]}"
    url = named(postgresql_url, application)
    account, initial = seed(url)
    env = {
        "CREDITMETER_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
        "CREDITMETER_IDLE_IN_TRANSACTION_TIMEOUT": str(IDLE_IN_TRANSACTION_TIMEOUT),
        "CREDITMETER_POOL_SIZE": "4",
        "CREDITMETER_SWEEP_INTERVAL": "0",
        "CREDITMETER_WORKER": "false",
    }
    server = start_server(url, tmp_path / "serve.log", "--workers", "2", env=env)
    try:
        load = Load(server.url, account)
        timeline = freeze_under(load, url, application, both_workers_connected(server))
        charges = load.all()
        for charge in charges:  # everything not acknowledged, sent again with its key
            for _ in range(RETRIES):
                if charge.usage_id is not None:
                    break
                if not load.send(charge).acknowledged:
                    time.sleep(0.1)
    finally:
        server.stop()
    sent = sorted((s for c in charges for s in c.requests), key=lambda s: s.started)
    tail = "\n".join(server.output().splitlines()[-30:])

    unexpected = [
        str(s) for s in sent if s.status is not None and not (s.acknowledged or s.retryable)
    ]
    assert not unexpected, "\n".join(unexpected[:10]) + "\n" + tail
    frozen, ended, resumed = timeline.frozen.at, timeline.ended_at, timeline.resumed_at
    waited = [s for s in sent if frozen <= s.finished < resumed and s.error_type == "busy"]
    assert waited, "no request that waited for the lock was answered while it was held"
    answered_meanwhile = [s for s in sent if ended < s.finished < resumed]
    assert any(s.acknowledged for s in answered_meanwhile), (
        "nothing acknowledged while the worker was frozen, after its session ended"
    )
    unresolved = [f"{c.key}: {c.requests[-1]}" for c in charges if c.usage_id is None]
    assert not unresolved, unresolved[:10]

    with CreditMeter(postgresql_url, migrate=False) as meter:
        recorded = recorded_usage(meter, account)
        assert len(recorded) == len(set(recorded)), "a usage recorded twice"
        assert set(recorded) == {c.usage_id for c in charges}
        assert meter.balance(account).available == initial - len(charges)
        assert meter.verify() == []
    print(
        f"\nfrozen worker: {len(sent)} requests ({THREADS} threads, 2 workers), "
        f"{sum(s.acknowledged for s in sent)} acknowledged, "
        f"{sum(s.error_type == 'busy' for s in sent)} busy, "
        f"{sum(s.error_type == 'unavailable' for s in sent)} unavailable, "
        f"{sum(s.status is None for s in sent)} given up by the client; "
        f"session ended {ended - frozen:.1f} s after the freeze, worker resumed "
        f"{resumed - frozen:.1f} s after it; "
        f"{sum(s.acknowledged for s in answered_meanwhile)} acknowledged in between"
    )
