"""PostgreSQL restarted under a live ``creditmeter serve`` that is under load.

Eight client threads send one-shot charges (``POST /v1/usage``) and authorize → settle
pairs, each with an Idempotency-Key of its own, to a two-worker server on a fresh schema.
Midway PostgreSQL is stopped and, two seconds later, started again; creditmeter is left
alone. Every request is recorded with its outcome: acknowledged (2xx), refused (402) or
failed (503, or a refused connection).

While the database is away a request fails at once with 503 and the ``unavailable`` error
body (never a 500, never a hang); once PostgreSQL accepts connections again the service
recovers by itself within a few seconds; every operation that failed is then retried with
its own key and applied at most once; everything acknowledged is in the ledger, and
nothing else; the books verify.

A second test restarts PostgreSQL while nobody calls the service: every worker still holds
pooled connections that the server has closed, and the first requests afterwards must not
be answered on them (503) but on new ones.

The cluster is the local one ``POSTGRES_URL`` points at, driven with ``pg_ctlcluster``
(the tests are skipped where there is none). It is running again when a test ends,
whatever happened: other tests use it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import httpx2
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from creditmeter import CreditMeter
from creditmeter.client import CreditMeterClient
from tests.client.conftest import ADMIN_KEY, Server, start_server
from tests.conftest import POSTGRES_URL, postgres_schema_url

THREADS: Final = 8
pytestmark = [pytest.mark.restarts_postgres, pytest.mark.serial]  # the server is everyone's

ACCOUNTS: Final = 4
FEATURE: Final = "op"
GRANT: Final = 10_000_000
TOO_MUCH: Final = 10**12
"""Every 20th operation asks for more than the account has: it must be refused (402)."""
WARM_UP: Final = 1.0
DOWN_FOR: Final = 2.0
AFTER_UP: Final = 3.0
RECOVERY_BOUND: Final = 2.0
"""Seconds after PostgreSQL accepts connections again by which every request succeeds."""
HANG_BOUND: Final = 5.0
"""No request may take longer, outage or not."""
CLIENT_TIMEOUT: Final = 15.0
PAUSE_AFTER_FAILURE: Final = 0.05
QUIET_REQUESTS: Final = 12
"""Requests sent one by one, each on a new connection, after a restart with no load."""
READY_SECONDS: Final = 60.0

Outcome = Literal["acknowledged", "refused", "failed"]


@dataclass(frozen=True)
class Postgres:
    """The local cluster that serves the test database, driven with ``pg_ctlcluster``."""

    version: str
    name: str
    host: str
    port: int

    def ctl(self, action: str) -> None:
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def ready(self) -> bool:
        command = ["pg_isready", "-q", "-h", self.host, "-p", str(self.port)]
        return subprocess.run(command, check=False, timeout=10).returncode == 0

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while not self.ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"PostgreSQL did not accept connections in {READY_SECONDS} s")
            time.sleep(0.05)

    def ensure_running(self) -> None:
        """Start the cluster if it does not answer, and wait until it accepts connections."""
        if not self.ready():
            # It may be starting already, or running after all: wait_ready decides.
            with contextlib.suppress(subprocess.CalledProcessError):
                self.ctl("start")
        self.wait_ready()


def local_cluster() -> Postgres | None:
    """The cluster on this machine that ``POSTGRES_URL`` points at, if it can be driven."""
    url = sa.make_url(POSTGRES_URL)
    host, port = url.host or "127.0.0.1", url.port or 5432
    tools = ("pg_lsclusters", "pg_ctlcluster", "pg_isready")
    if host not in ("127.0.0.1", "localhost", "::1") or not all(map(shutil.which, tools)):
        return None
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        version, name, cluster_port, *_ = line.split()
        if int(cluster_port) == port:
            return Postgres(version, name, host, port)
    return None


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """The cluster, running again at teardown whatever happened."""
    cluster = local_cluster()
    if cluster is None:
        pytest.skip("PostgreSQL is not a local cluster that pg_ctlcluster can restart")
    try:
        yield cluster
    finally:
        cluster.ensure_running()


def run_sql(statement: str) -> None:
    """One statement on a connection of its own: a pooled one would not outlive the
    restart (which is why this test does not use the ``postgresql_url`` fixture)."""
    engine = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def database_url(postgres: Postgres) -> Iterator[str]:
    """A URL whose connections see only a new, empty schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    run_sql(f"CREATE SCHEMA {schema}")
    try:
        yield postgres_schema_url(schema)
    finally:
        postgres.ensure_running()
        run_sql(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``creditmeter serve`` with two workers, shared by the tests of this module."""
    log = tmp_path_factory.mktemp("restart") / "serve.log"
    served = start_server(database_url, log, "--workers", "2")
    try:
        yield served
    finally:
        served.stop()


@dataclass(frozen=True)
class Sent:
    """One request and what came of it; ``status`` is ``None`` when nothing answered."""

    what: str
    key: str
    retry: bool
    started: float
    finished: float
    wall: float
    status: int | None
    body: Any
    retry_after: str | None
    error: str

    @property
    def outcome(self) -> Outcome:
        if self.status is not None and 200 <= self.status < 300:
            return "acknowledged"
        if self.status in (402, 409):
            return "refused"
        return "failed"

    @property
    def error_type(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            kind = self.body["error"].get("type")
            return kind if isinstance(kind, str) else None
        return None

    @property
    def unavailable(self) -> bool:
        """The database's outage, reported as the contract says."""
        return self.status == 503 and self.error_type == "unavailable" and self.retry_after == "1"

    @property
    def refused_connection(self) -> bool:
        return self.status is None and self.error == "ConnectError"

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def __str__(self) -> str:
        answer = f"HTTP {self.status} {self.body!r}" if self.status else self.error
        return f"{self.what} {self.key}{' (retry)' if self.retry else ''}: {answer}"


@dataclass
class Operation:
    """A charge, or an authorize → settle pair, and every request sent for it."""

    kind: Literal["charge", "hold"]
    account: str
    key: str
    credits: int
    requests: list[Sent] = field(default_factory=list)
    outcome: Outcome = "failed"
    hold_id: str | None = None
    usage_id: str | None = None
    charged: int = 0


class Load:
    """The client threads: each sends operations until told to stop, then retries its
    failed ones with their own keys."""

    def __init__(self, url: str, accounts: list[str]) -> None:
        self.url = url
        self.accounts = accounts
        self.stop = threading.Event()
        self.operations: list[list[Operation]] = [[] for _ in range(THREADS)]

    def run(self, index: int) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx2.Client(base_url=self.url, headers=headers, timeout=CLIENT_TIMEOUT) as http:
            mine = self.operations[index]
            account = self.accounts[index % len(self.accounts)]
            n = 0
            while not self.stop.is_set():
                n += 1
                credits = TOO_MUCH if n % 20 == 0 else 1 + n % 5
                kind: Literal["charge", "hold"] = "charge" if n % 2 else "hold"
                op = Operation(kind, account, f"t{index}-{n}-{uuid.uuid4().hex[:8]}", credits)
                mine.append(op)
                self.perform(http, op, retry=False)
                if op.outcome == "failed":
                    time.sleep(PAUSE_AFTER_FAILURE)
            for op in [op for op in mine if op.outcome == "failed"]:
                self.perform(http, op, retry=True)

    def perform(self, http: httpx2.Client, op: Operation, *, retry: bool) -> None:
        if op.kind == "charge":
            body = {"account": op.account, "feature": FEATURE, "credits": op.credits}
            sent = self.post(http, "charge", "/v1/usage", body, op.key, retry, op)
            if sent.outcome == "acknowledged":
                op.usage_id, op.charged = sent.body["id"], sent.body["charged"]
            return
        if op.hold_id is None:
            body = {"account": op.account, "feature": FEATURE, "credits": op.credits}
            sent = self.post(http, "authorize", "/v1/holds", body, f"{op.key}:a", retry, op)
            if sent.outcome != "acknowledged":
                return
            op.hold_id = sent.body["id"]
        path = f"/v1/holds/{op.hold_id}/settle"
        sent = self.post(http, "settle", path, {"credits": op.credits}, f"{op.key}:s", retry, op)
        if sent.outcome == "acknowledged":
            assert sent.body["hold"]["status"] == "settled", sent
            op.usage_id, op.charged = sent.body["usage_id"], sent.body["charged"]

    @staticmethod
    def post(
        http: httpx2.Client,
        what: str,
        path: str,
        body: dict[str, Any],
        key: str,
        retry: bool,
        op: Operation,
    ) -> Sent:
        wall, started = time.time(), time.monotonic()
        status, answer, retry_after, error = None, None, None, ""
        try:
            response = http.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx2.TransportError as failure:
            error = type(failure).__name__
        else:
            status, retry_after = response.status_code, response.headers.get("Retry-After")
            try:
                answer = response.json()
            except ValueError:
                answer = response.text
        sent = Sent(
            what, key, retry, started, time.monotonic(), wall, status, answer, retry_after, error
        )
        op.requests.append(sent)
        op.outcome = sent.outcome
        return sent


def seed(url: str) -> tuple[list[str], dict[str, int]]:
    """The schema, a feature and the accounts, each with a large purchase; their balances."""
    accounts = [f"acct-{i}-{uuid.uuid4().hex[:6]}" for i in range(ACCOUNTS)]
    with CreditMeter(url) as meter:
        meter.put_feature(FEATURE, rates={"calls": 1})
        for account in accounts:
            meter.create_account(account)
            meter.grant(account, GRANT, source="purchase")
        return accounts, {a: meter.balance(a).available for a in accounts}


def tail(server: Server, lines: int = 40) -> str:
    return "\n".join(server.output().splitlines()[-lines:])


@dataclass(frozen=True)
class Timeline:
    down_at: float
    """When PostgreSQL was told to stop (monotonic seconds)."""
    up_at: float
    """When it accepted connections again."""


def restart_under(load: Load, postgres: Postgres) -> Timeline:
    """Run the load, stop PostgreSQL midway and start it again; PostgreSQL is running
    when this returns or raises."""
    with ThreadPoolExecutor(THREADS, thread_name_prefix="load") as pool:
        threads = [pool.submit(load.run, i) for i in range(THREADS)]
        try:
            time.sleep(WARM_UP)
            down_at = time.monotonic()
            postgres.ctl("stop")
            time.sleep(DOWN_FOR)
            postgres.ctl("start")
            postgres.wait_ready()
            up_at = time.monotonic()
            time.sleep(AFTER_UP)
        finally:
            load.stop.set()
            postgres.ensure_running()
        for thread in threads:
            thread.result()
    return Timeline(down_at, up_at)


def allowed(s: Sent) -> bool:
    """An acknowledgement, a refusal for lack of credits, or the database's outage as 503
    ``unavailable`` (or a refused connection): nothing else may come back."""
    if s.outcome == "acknowledged":
        return True
    if s.outcome == "refused":
        return s.status == 402 and s.error_type == "insufficient_credits" and s.what != "settle"
    return s.unavailable or s.refused_connection


def check_recovery(sent: list[Sent], timeline: Timeline) -> float:
    """The outage was seen, began when PostgreSQL went away (a request in flight then may
    fail), and ended by itself soon after PostgreSQL came back; how long after, in
    seconds."""
    first = [s for s in sent if not s.retry]
    failures = [s for s in first if s.outcome == "failed"]
    assert any(s.status == 503 for s in failures), "no request met the outage"
    early = [str(s) for s in failures if s.finished < timeline.down_at]
    assert not early, f"failed before PostgreSQL was stopped: {early[:5]}"
    bound = timeline.up_at + RECOVERY_BOUND
    late = [str(s) for s in failures if s.started > bound]
    assert not late, f"still failing {RECOVERY_BOUND} s after PostgreSQL was back: {late[:5]}"
    assert sum(s.started > bound for s in first) > THREADS, "too few requests to tell"
    return max(0.0, max(s.finished for s in failures) - timeline.up_at)


def check_ledger(
    url: str, service: str, accounts: list[str], initial: dict[str, int], ops: list[Operation]
) -> dict[str, datetime]:
    """Every acknowledged usage is listed by the service, nothing else is, each account's
    balance is its initial one less what was acknowledged as charged, no hold is left
    pending, and the books verify; the listed usages' creation times."""
    acknowledged = [op for op in ops if op.outcome == "acknowledged"]
    created: dict[str, datetime] = {}
    with CreditMeterClient(service, ADMIN_KEY) as client:
        for account in accounts:
            listed = list(client.iter_usage(account))
            ids = [u.id for u in listed]
            assert len(ids) == len(set(ids)), f"{account}: a usage listed twice"
            expected = {op.usage_id for op in acknowledged if op.account == account}
            assert set(ids) == expected, (
                f"{account}: lost {sorted(str(i) for i in expected - set(ids))[:5]}, "
                f"extra {sorted(set(ids) - expected)[:5]}"
            )
            created.update((u.id, u.created_at) for u in listed)
    with CreditMeter(url, migrate=False) as meter:
        for account in accounts:
            balance = meter.balance(account)
            assert balance.held == 0, f"{account}: a hold was left pending: {balance}"
            charged = sum(op.charged for op in acknowledged if op.account == account)
            assert balance.available == initial[account] - charged, account
        assert meter.verify() == []
    return created


def found_applied(s: Sent, created: dict[str, datetime]) -> bool:
    """Whether a retry was answered with what had been done before it was sent (the
    failed attempt had in fact been committed)."""
    if s.outcome != "acknowledged":
        return False
    if s.what == "authorize":
        at = datetime.fromisoformat(s.body["created_at"].replace("Z", "+00:00"))
    else:
        at = created[s.body["id"] if s.what == "charge" else s.body["usage_id"]]
    return at.timestamp() < s.wall


def test_the_service_rides_out_a_postgres_restart_under_load(
    database_url: str, postgres: Postgres, server: Server
) -> None:
    accounts, initial = seed(database_url)
    load = Load(server.url, accounts)
    timeline = restart_under(load, postgres)
    ops = [op for mine in load.operations for op in mine]
    sent = [s for op in ops for s in op.requests]

    unexpected = [str(s) for s in sent if not allowed(s)]
    assert not unexpected, "\n".join(unexpected[:10]) + "\n" + tail(server)
    slowest = max(s.seconds for s in sent)
    assert slowest < HANG_BOUND, f"a request took {slowest:.1f} s"
    recovered_in = check_recovery(sent, timeline)

    # Every failed operation was sent again with its keys after recovery, and settled.
    unresolved = [f"{op.key}: {op.requests[-1]}" for op in ops if op.outcome == "failed"]
    assert not unresolved, unresolved[:10]
    misjudged = [op.key for op in ops if (op.outcome == "refused") != (op.credits == TOO_MUCH)]
    assert not misjudged, f"refused when affordable, or the reverse: {misjudged[:10]}"

    created = check_ledger(database_url, server.url, accounts, initial, ops)
    failed_keys = {s.key for s in sent if not s.retry and s.outcome == "failed"}
    again = [s for s in sent if s.retry and s.key in failed_keys]
    applied = Counter(s.what for s in again if found_applied(s, created))
    print(
        f"\nPostgreSQL restart under load: {len(sent)} requests sent "
        f"({THREADS} threads, 2 workers), "
        f"{sum(s.outcome == 'acknowledged' for s in sent)} acknowledged, "
        f"{sum(s.outcome == 'refused' for s in sent)} refused (402), "
        f"{sum(s.status == 503 for s in sent)} 503s, "
        f"{sum(s.refused_connection for s in sent)} connection errors; "
        f"PostgreSQL down {timeline.up_at - timeline.down_at:.1f} s "
        f"(stop, {DOWN_FOR:.0f} s, start); "
        f"service recovered {recovered_in:.2f} s after PostgreSQL was back; "
        f"{len(again)} failed requests sent again with their keys after recovery, "
        f"{sum(applied.values())} of them found already applied {dict(applied)}; "
        f"slowest request {slowest:.2f} s"
    )


def test_a_restart_while_the_service_is_idle_costs_no_request(
    database_url: str, postgres: Postgres, server: Server
) -> None:
    """Every worker holds pooled connections (from its start, and from any load before);
    PostgreSQL restarts while nobody calls; the first requests afterwards must not be
    answered on the dead connections."""
    accounts, initial = seed(database_url)
    try:
        postgres.ctl("restart")
        postgres.wait_ready()
    finally:
        postgres.ensure_running()
    answers: list[str] = []
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for n in range(QUIET_REQUESTS):
        # A new connection each time, so that the requests are spread over the workers.
        with httpx2.Client(base_url=server.url, headers=headers, timeout=CLIENT_TIMEOUT) as http:
            if n % 2:
                body = {"account": accounts[0], "feature": FEATURE, "credits": 1}
                key = {"Idempotency-Key": f"quiet-{n}-{uuid.uuid4().hex[:8]}"}
                response = http.post("/v1/usage", json=body, headers=key)
            else:
                response = http.get(f"/v1/accounts/{accounts[0]}/balance")
        answers.append(f"{response.request.method} {response.status_code} {response.text}")
    failed = [a for a in answers if " 200 " not in a]
    assert not failed, f"{len(failed)} of {QUIET_REQUESTS} failed after the restart: {failed}"
    with CreditMeter(database_url, migrate=False) as meter:
        charged = QUIET_REQUESTS // 2
        assert meter.balance(accounts[0]).available == initial[accounts[0]] - charged
        assert meter.verify() == []
