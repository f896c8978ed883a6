"""The HTTP service on PostgreSQL under load, each figure against a baseline of the same run.

2. authorize + settle pairs, ``creditmeter serve --workers 2``, 32 clients on 32 accounts:
   pairs/s, p50 and p99 of a pair, against ``pgbench`` TPC-B-like (8 clients) tps; then,
   for information, the same requests answered by empty endpoints on the same HTTP stack
   (``benchmarks.floor``): the floor under the service's figures.
3. the same on ONE account: pairs/s against ``pgbench`` updating one row at 32 clients;
   then the books: no overdraft when 32 clients race for the last credits, ``verify`` empty.
4. ``POST /v1/usage/batch`` of 1,000 events over 50 accounts, 4 senders, their connections
   spread evenly over the workers: events/s (target 20,000), with the TPC-B-like tps
   beside it.
6. scale-out: ``--workers 1``, ``--workers 2`` (also with a pool of 32), and two ``serve
   --workers 1`` each in a network namespace of its own, all running at once and measured
   in alternating rounds (so that a change in the machine's other load hits them alike);
   8 and 64 clients on benchmark 2's server; the CPU of servers, PostgreSQL and load
   generator in each case, and the pairs/s PostgreSQL alone could give on these cores at
   its CPU cost per pair.

Every server gets a fresh schema, the sweeper off and its JSON logs in a file. The load
generator is asyncio with one keep-alive connection per client (``benchmarks.load``); its
loops are bounded in time and count, and it targets 127.0.0.1 or namespaces it made. All of
it runs on the same two cores: servers, PostgreSQL, pgbench and the load generator. The
detail (CPU by process group, CPU ms per operation, what the server's PostgreSQL sessions
were doing) goes to standard error as it is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from benchmarks import Result, absolute, compared, percentile
from benchmarks import pgbench as pgb
from benchmarks.load import (
    Client,
    CpuMeter,
    CpuShares,
    HttpError,
    connect,
    connections,
    listening,
    shares,
)
from benchmarks.netns import Namespace, available, namespaces
from benchmarks.pgactivity import Activity, session_pids
from benchmarks.server import (
    FEATURE,
    Seeded,
    Server,
    floor_serving,
    fresh_schema,
    schema_url,
    seed,
    serving,
)
from creditmeter import CreditMeter

CLIENTS = 32
BATCH = 1_000
BATCH_ACCOUNTS = 50
SENDERS = 4
ESTIMATE = {"tokens": 1_000}
USAGE = {"tokens": 800}
MAX_ROUNDS = 1_000_000
"""A bound on every client loop besides its deadline."""
EXHAUST_CREDITS = 100_000
EXHAUST_ATTEMPTS = 10
BUSY = 0.25
"""Cores used by processes outside the benchmark above which a figure is flagged."""
CLIENT_KIND = os.environ.get("CREDITMETER_BENCH_CLIENT", "raw")
"""``raw`` (benchmarks.load.Connection) or ``httpx2`` (httpx2.AsyncClient)."""
NETWORK_ERRORS = (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, HttpError)


@dataclass(frozen=True)
class Durations:
    warmup: float
    measure: float
    """Benchmark 2's measuring time."""
    other: float
    """The measuring time of benchmarks 3 and 4."""
    short: float
    """The measuring time of the other client counts."""
    round: float
    """One round of benchmark 6 (after a 1 s warm-up)."""
    cycles: int
    """Rounds of benchmark 6 per configuration."""
    pgbench: int


def durations(quick: bool) -> Durations:
    if quick:
        return Durations(
            warmup=1.0, measure=3.0, other=3.0, short=2.0, round=1.5, cycles=1, pgbench=3
        )
    return Durations(
        warmup=3.0, measure=15.0, other=10.0, short=4.0, round=4.0, cycles=2, pgbench=10
    )


def say(text: str) -> None:
    print(f"[http] {text}", file=sys.stderr, flush=True)


@dataclass
class Load:
    """What a timed run did: operations completed inside the measuring window, their
    latencies, errors by kind, the CPU used meanwhile and the server's sessions."""

    label: str
    seconds: float
    done: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: CpuShares | None = None
    activity: str | None = None
    spread: list[list[int]] = field(default_factory=list)
    """Keep-alive connections held by each server process, at the window's start (one list
    per round)."""

    @property
    def rate(self) -> float:
        return self.done / self.seconds

    def ms(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000 if self.latencies else float("nan")

    def cores(self, group: str) -> float:
        return self.cpu.cores.get(group, 0.0) if self.cpu is not None else float("nan")

    def describe(self, unit: str = "pairs/s", what: str = "") -> str:
        text = f"{self.label}: {self.rate:,.0f} {unit}"
        if self.latencies:
            text += f", {what}p50 {self.ms(50):.1f} ms, {what}p99 {self.ms(99):.1f} ms"
        if self.errors:
            text += f", ERRORS {dict(self.errors)}"
        if self.cpu is not None:
            text += f"\n        cores used (of {os.cpu_count()}): {self.cpu.text()}"
            if self.done:
                per = 1000 / self.rate
                text += "\n        CPU ms per operation: " + ", ".join(
                    f"{group} {self.cores(group) * per:.2f}"
                    for group in ("server", "postgres", "pg ended", "client")
                )
            if self.cores("other") > BUSY:
                text += (
                    f"\n        NOTE: other processes used {self.cores('other'):.2f} cores "
                    "meanwhile: this figure is depressed"
                )
            text += (
                "\n        (pg ended: PostgreSQL sessions that closed meanwhile, anyone's: "
                "reconnections when the pool overflows)"
                if self.cores("pg ended") > 0.02
                else ""
            )
        if self.activity:
            text += f"\n        {self.activity}"
        if self.spread:
            rounds = " | ".join(", ".join(str(n) for n in r) or "-" for r in self.spread)
            text += f"\n        keep-alive connections per server process: {rounds}"
        return text


def merged(label: str, loads: list[Load]) -> Load:
    """Rounds of the same configuration as one load (CPU shares averaged by time)."""
    total = Load(label, sum(load.seconds for load in loads))
    groups: dict[str, float] = {}
    for load in loads:
        total.done += load.done
        total.latencies += load.latencies
        total.errors.update(load.errors)
        total.spread += load.spread
        if load.cpu is not None:
            for group, cores in load.cpu.cores.items():
                groups[group] = groups.get(group, 0.0) + cores * load.seconds
    total.cpu = CpuShares(total.seconds, {g: v / total.seconds for g, v in groups.items()})
    return total


Target = tuple[str, int]


@dataclass(frozen=True)
class Window:
    """The measuring window: an operation counts if it completes inside it."""

    begin: float
    end: float

    def counts(self, finished: float) -> bool:
        return self.begin <= finished <= self.end


Act = Callable[[Client, int], Awaitable[None]]
Step = Callable[[Load, Window, int], Act]


async def timed(
    label: str,
    targets: list[Target],
    key: str,
    clients: int,
    warmup: float,
    measure: float,
    cpu: CpuMeter,
    activity: Activity | None,
    step: Step,
    spread: Callable[[], list[int]] | None = None,
) -> Load:
    """``clients`` loops, each on its own keep-alive connection to a target (round robin),
    running ``step`` until the end of warm-up + measure, at most MAX_ROUNDS times."""
    load = Load(label, measure)
    begin = time.monotonic() + warmup
    window = Window(begin, begin + measure)
    sampled: list[CpuShares] = []

    async def one(i: int) -> None:
        host, port = targets[i % len(targets)]
        conn = connect(CLIENT_KIND, host, port, {"Authorization": f"Bearer {key}"})
        act = step(load, window, i)
        try:
            for n in range(MAX_ROUNDS):
                if time.monotonic() >= window.end:
                    break
                try:
                    await act(conn, n)
                except NETWORK_ERRORS as error:
                    load.errors[type(error).__name__] += 1
                    await asyncio.sleep(0.01)
        finally:
            await conn.close()

    async def sample() -> None:
        await asyncio.sleep(max(window.begin - time.monotonic(), 0.0))
        before = cpu.snapshot()
        if spread is not None:
            load.spread.append(spread())
        if activity is not None:
            activity.start()
        try:
            await asyncio.sleep(max(window.end - time.monotonic(), 0.0))
        finally:
            if activity is not None:
                activity.stop()
        sampled.append(shares(before, cpu.snapshot()))

    await asyncio.gather(sample(), *(one(i) for i in range(clients)))
    load.cpu = sampled[0] if sampled else None
    load.activity = None if activity is None else activity.text()
    return load


def pair_step(accounts: list[str]) -> Step:
    """Authorize then settle, client ``i`` on ``accounts[i % len]``, each POST with its own
    Idempotency-Key; a pair's latency runs from sending the authorize to the settle's answer."""
    run = uuid.uuid4().hex[:8]

    def step(load: Load, window: Window, i: int) -> Act:
        hold_body: dict[str, Any] = {
            "account": accounts[i % len(accounts)],
            "feature": FEATURE,
            "estimate": ESTIMATE,
            "ttl_seconds": 300,
        }
        settle_body = {"usage": USAGE}

        async def act(conn: Client, n: int) -> None:
            started = time.monotonic()
            status, hold = await conn.post(
                "/v1/holds", hold_body, {"Idempotency-Key": f"{run}-h-{i}-{n}"}
            )
            if status != 200:
                load.errors[f"authorize {status}"] += 1
                return
            status, _ = await conn.post(
                f"/v1/holds/{hold['id']}/settle",
                settle_body,
                {"Idempotency-Key": f"{run}-s-{i}-{n}"},
            )
            if status != 200:
                load.errors[f"settle {status}"] += 1
                return
            finished = time.monotonic()
            if window.counts(finished):
                load.done += 1
                load.latencies.append(finished - started)

        return act

    return step


def run_pairs(
    label: str,
    servers: list[Server],
    seeded: Seeded,
    clients: int,
    warmup: float,
    measure: float,
    schema: str,
    *,
    show: bool = True,
) -> Load:
    """A timed run of pairs against the servers (clients spread over them in turn), with
    the CPU of servers, PostgreSQL and client, the server's PostgreSQL sessions, and the
    keep-alive connections each server process holds."""
    step = pair_step(seeded.accounts)
    targets = [(s.host, s.port) for s in servers]
    cpu = cpu_meter([s.process.pid for s in servers], schema)

    key = seeded.service_key
    spread = partial(held_by, servers)
    load = asyncio.run(
        timed(label, targets, key, clients, warmup, measure, cpu, Activity(schema), step, spread)
    )
    if show:
        say(load.describe())
    return load


@dataclass
class Exhaustion:
    settled: int = 0
    refused: int = 0
    errors: Counter[str] = field(default_factory=Counter)


def exhaust(target: Target, key: str, account: str, clients: int, attempts: int) -> Exhaustion:
    """``clients`` racing to authorize and settle ESTIMATE ``attempts`` times each on an
    account that can pay for fewer pairs than that."""
    outcome = Exhaustion()
    run = uuid.uuid4().hex[:8]
    body = {"account": account, "feature": FEATURE, "estimate": ESTIMATE}

    async def one(i: int) -> None:
        conn = connect(CLIENT_KIND, *target, {"Authorization": f"Bearer {key}"})
        try:
            for n in range(attempts):
                try:
                    status, hold = await conn.post(
                        "/v1/holds", body, {"Idempotency-Key": f"{run}-h-{i}-{n}"}
                    )
                    if status == 402:
                        outcome.refused += 1
                        continue
                    if status != 200:
                        outcome.errors[f"authorize {status}"] += 1
                        continue
                    status, _ = await conn.post(
                        f"/v1/holds/{hold['id']}/settle",
                        {"usage": ESTIMATE},
                        {"Idempotency-Key": f"{run}-s-{i}-{n}"},
                    )
                    if status == 200:
                        outcome.settled += 1
                    else:
                        outcome.errors[f"settle {status}"] += 1
                except NETWORK_ERRORS as error:
                    outcome.errors[type(error).__name__] += 1
        finally:
            await conn.close()

    async def go() -> None:
        await asyncio.gather(*(one(i) for i in range(clients)))

    asyncio.run(go())
    return outcome


def held_by(servers: list[Server]) -> list[int]:
    """The keep-alive connections each process of the servers holds, the busiest of each
    server first."""
    held: list[int] = []
    for s in servers:
        held += sorted(connections([s.process.pid], s.port).values(), reverse=True)
    return held


async def post_batch(conn: Client, body: dict[str, Any], load: Load) -> int:
    """The events of the batch charged; the batch's or its events' errors counted."""
    status, answer = await conn.post("/v1/usage/batch", body, {})
    if status != 200:
        load.errors[f"batch {status}"] += 1
        return 0
    statuses = Counter(r["status"] for r in answer["results"])
    for code, count in statuses.items():
        if code != 200:
            load.errors[f"event {code}"] += count
    return statuses[200]


SPREAD_TRIES = 20
"""How many times benchmark 4 opens its senders' connections to have them spread evenly
over the workers (a 2-and-2 draw comes 3 times in 8 for 4 connections over 2 workers)."""


def even(held: list[int], workers: int) -> bool:
    """Whether the connections ``held`` by each process (those that hold any) are spread
    over ``workers`` workers as evenly as their number allows."""
    spread = held + [0] * (workers - len(held))
    return max(spread) - min(spread) <= 1


async def spread_evenly(
    server: Server, opened: Callable[[], Awaitable[list[Client]]]
) -> list[Client]:
    """The connections ``opened()`` gives, opened again until the kernel has spread them
    evenly over the server's workers, as a load balancer would (up to ``SPREAD_TRIES``
    times): it spreads them by a hash of each one's address and port, and with a few
    long-lived connections its draw, not the server, would decide how busy each worker
    is."""
    conns = await opened()
    workers = listening(server.process.pid, server.port)
    for _ in range(SPREAD_TRIES):
        if even(held_by([server]), workers):
            break
        await asyncio.gather(*(conn.close() for conn in conns))
        conns = await opened()
    return conns


def run_batches(
    label: str,
    server: Server,
    seeded: Seeded,
    senders: int,
    size: int,
    measure: float,
    cpu: CpuMeter,
    schema: str,
    *,
    shared: bool,
) -> Load:
    """``senders`` loops posting batches of ``size`` one-shot usages (after one small
    warm-up batch each), starting new batches until ``measure`` seconds have passed;
    events/s over the time until the last batch is answered. ``shared``: every sender's
    batches spread over all the accounts (so batches wait for each other's account
    locks); else each sender has its own share of them, as a pipeline partitioned by
    account would."""
    load = Load(label, measure)
    run = uuid.uuid4().hex[:8]
    share = len(seeded.accounts) // senders
    activity = Activity(schema)

    def events(sender: int, n: int, count: int) -> dict[str, Any]:
        accounts = seeded.accounts if shared else seeded.accounts[sender * share :][:share]
        return {
            "events": [
                {
                    "account": accounts[k % len(accounts)],
                    "feature": FEATURE,
                    "usage": {"tokens": 10},
                    "idempotency_key": f"{run}-{sender}-{n}-{k}",
                }
                for k in range(count)
            ]
        }

    async def opened() -> list[Client]:
        """The senders' connections, each with a small batch answered on it."""
        auth = {"Authorization": f"Bearer {seeded.service_key}"}
        conns = [connect(CLIENT_KIND, server.host, server.port, auth) for _ in range(senders)]
        await asyncio.gather(*(post_batch(c, events(s, -1, 50), load) for s, c in enumerate(conns)))
        return conns

    async def go() -> None:
        conns = await spread_evenly(server, opened)
        try:
            load.spread.append(held_by([server]))
            before = cpu.snapshot()
            end = before.at + measure
            finished: list[float] = []

            async def sender(s: int) -> None:
                for n in range(MAX_ROUNDS):
                    if time.monotonic() >= end:
                        break
                    body = events(s, n, size)
                    started = time.monotonic()
                    try:
                        # Not ``load.done += await …``: that reads ``load.done`` before
                        # the await and loses the other senders' batches meanwhile.
                        charged = await post_batch(conns[s], body, load)
                        load.done += charged
                    except NETWORK_ERRORS as error:
                        load.errors[type(error).__name__] += 1
                        await asyncio.sleep(0.01)
                    load.latencies.append(time.monotonic() - started)
                finished.append(time.monotonic())

            activity.start()
            try:
                await asyncio.gather(*(sender(s) for s in range(senders)))
            finally:
                activity.stop()
            after = cpu.snapshot()
            load.seconds = max(finished) - before.at
            load.cpu = shares(before, after)
            load.activity = activity.text()
        finally:
            for conn in conns:
                await conn.close()

    asyncio.run(go())
    say(load.describe("events/s", what="batch "))
    return load


def books(url: str, accounts: list[str], race: Exhaustion, exhausted: str) -> list[str]:
    """What is wrong with the books after a run, said as it is found: ``verify``'s
    violations, one of ``accounts`` or the ``exhausted`` one overdrawn, in debt or with
    credits still held, or the race for the last credits settling other than the
    affordable pairs."""
    with CreditMeter(url, migrate=False) as meter:
        started = time.monotonic()
        violations = meter.verify()
        verify_seconds = time.monotonic() - started
        balances = [meter.balance(a) for a in (*accounts, exhausted)]
    affordable = EXHAUST_CREDITS // ESTIMATE["tokens"]
    problems: list[str] = [f"verify: {v}" for v in violations]
    problems += [
        f"{b.account_id}: available {b.available}, held {b.held}, debt {b.debt}"
        for b in balances
        if b.available < 0 or b.held != 0 or b.debt != 0
    ]
    if balances[-1].available != 0 or race.settled != affordable:
        problems.append(
            f"race: {race.settled} pairs settled for {affordable} affordable, "
            f"available after {balances[-1].available}"
        )
    if race.errors:
        problems.append(f"race errors {dict(race.errors)}")
    say(
        f"race for the last credits: {race.settled} settled (affordable {affordable}), "
        f"{race.refused} refused 402, errors {dict(race.errors)}; verify took "
        f"{verify_seconds:.1f} s, {len(violations)} violations"
    )
    for problem in problems:
        say(f"PROBLEM {problem}")
    return problems


# The benchmarks.


def busiest(name: str, load: Load) -> Result:
    """The keep-alive connections held by the busiest server process (averaged over the
    rounds): all of them on one means the other processes idle."""
    counts = [max(r, default=0) for r in load.spread]
    return Result(name, sum(counts) / len(counts), f"of {CLIENTS}")


def cpu_meter(server_pids: list[int], schema: str) -> CpuMeter:
    """The CPU of the servers (with their workers), of the PostgreSQL sessions named after
    the schema with PostgreSQL's background processes, and of the load generator."""
    return CpuMeter({"server": server_pids}, postgres=lambda: session_pids(schema))


def bench_pairs(d: Durations, tpcb_tps: float) -> list[Result]:
    """2: 32 clients on 32 accounts, --workers 2; then 8 and 64 clients on the same server
    (points of benchmark 6)."""
    accounts = [f"acct-{i:02d}" for i in range(CLIENTS)]
    with fresh_schema() as schema:
        url = schema_url(schema)
        seeded = seed(url, accounts)
        with serving(url, workers=2) as server:
            main = run_pairs(
                "2 workers, 32 clients", [server], seeded, CLIENTS, d.warmup, d.measure, schema
            )
            extra = [
                run_pairs(f"2 workers, {n} clients", [server], seeded, n, 1.0, d.short, schema)
                for n in (8, 64)
            ]
        with floor_serving(workers=2) as floor:
            empty = run_pairs(
                "empty endpoints, 2 workers, 32 clients",
                [floor],
                seeded,
                CLIENTS,
                d.warmup,
                d.measure,
                schema,
            )
    results = [
        compared(
            "2 HTTP authorize+settle, --workers 2, 32 clients",
            main.rate,
            "pairs/s",
            tpcb_tps,
            "tps pgbench TPC-B-like -c 8",
            target="ratio >= 0.4",
            meets=lambda r: r >= 0.4 and not main.errors,
        ),
        absolute(
            "2 HTTP pair latency p99",
            main.ms(99),
            "ms",
            target="<= 25 ms",
            meets=lambda ms: ms <= 25,
        ),
        Result("2 HTTP pair latency p50", main.ms(50), "ms"),
        compared(
            "2 the HTTP stack alone: empty endpoints, no database",
            empty.rate,
            "pairs/s",
            tpcb_tps,
            "tps pgbench TPC-B-like -c 8",
            target="(information)",
            meets=None,
        ),
        Result("2 the HTTP stack alone: pair latency p99", empty.ms(99), "ms"),
        Result("2 the HTTP stack alone: pair latency p50", empty.ms(50), "ms"),
    ]
    if main.spread:
        results.append(busiest("2 keep-alive connections on the busiest worker", main))
    for load in extra:
        results.append(
            Result(
                f"6 {load.label} (32 clients: {main.rate:,.0f})",
                load.rate,
                "pairs/s",
            )
        )
    return results


def bench_hot(d: Durations, hot_tps: float) -> list[Result]:
    """3: 32 clients on ONE account; then the race for the last credits, and the books."""
    exhausted = "acct-exhaust"
    with fresh_schema() as schema:
        url = schema_url(schema)
        seeded = seed(url, ["acct-hot"])
        with CreditMeter(url, migrate=False) as meter:
            meter.create_account(exhausted)
            meter.grant(exhausted, EXHAUST_CREDITS, source="purchase")
        with serving(url, workers=2) as server:
            target = (server.host, server.port)
            hot = run_pairs(
                "hot account, 2 workers, 32 clients",
                [server],
                seeded,
                CLIENTS,
                d.warmup,
                d.other,
                schema,
            )
            race = exhaust(target, seeded.service_key, exhausted, CLIENTS, EXHAUST_ATTEMPTS)
        problems = books(url, ["acct-hot"], race, exhausted)
    return [
        compared(
            "3 hot account authorize+settle, 32 clients",
            hot.rate,
            "pairs/s",
            hot_tps,
            "tps pgbench 1-row UPDATE -c 32",
            target="ratio >= 0.5",
            meets=lambda r: r >= 0.5 and not hot.errors,
        ),
        Result("3 hot account pair latency p99", hot.ms(99), "ms"),
        absolute(
            "3 hot account overdrafts and violations",
            len(problems),
            "found",
            target="0 (available >= 0, verify empty)",
            meets=lambda n: n == 0,
        ),
    ]


def bench_batches(d: Durations, tpcb_tps: float) -> list[Result]:
    """4: batches of 1,000 events from 4 senders, each over its own 50 accounts; then the
    4 senders over the same 50 accounts."""
    accounts = [f"acct-{i:03d}" for i in range(BATCH_ACCOUNTS * SENDERS)]
    loads: dict[bool, Load] = {}
    with fresh_schema() as schema:
        url = schema_url(schema)
        seeded = seed(url, accounts)
        with serving(url, workers=2) as server:
            cpu = cpu_meter([server.process.pid], schema)
            for shared in (False, True):
                whose = "the same" if shared else "their own"
                loads[shared] = run_batches(
                    f"usage/batch x{BATCH}, {SENDERS} senders on {whose} {BATCH_ACCOUNTS} accounts",
                    server,
                    seeded,
                    SENDERS,
                    BATCH,
                    d.other,
                    cpu,
                    schema,
                    shared=shared,
                )
    target = 20_000.0
    own, same = loads[False], loads[True]
    return [
        Result(
            f"4 usage/batch ingestion, {BATCH}-event batches, {SENDERS} senders",
            own.rate,
            "events/s",
            tpcb_tps,
            "tps pgbench TPC-B-like -c 8",
            own.rate / tpcb_tps if tpcb_tps else None,
            f">= {target:,.0f} events/s",
            own.rate >= target and not own.errors,
        ),
        Result(
            f"  the {SENDERS} senders on the same {BATCH_ACCOUNTS} accounts",
            same.rate,
            "events/s",
            own.rate,
            "events/s on their own accounts",
            same.rate / own.rate if own.rate else None,
            "(information)",
            None,
        ),
    ]


POOL = CLIENTS
"""Connections per worker in benchmark 6's pooled setup: as many as the clients, since a
worker may be given any share of the 32 keep-alive connections; then no session is closed
and opened again, and PostgreSQL has at most 32 of them."""


@dataclass(frozen=True)
class Setup:
    label: str
    workers: int
    pool: int | None = None
    separate: bool = False
    """Two servers, each in a network namespace of its own."""


SETUPS = (
    Setup("--workers 1", 1),
    Setup("--workers 2", 2),
    Setup(f"--workers 2, CREDITMETER_POOL_SIZE={POOL}", 2, POOL),
    Setup("2 servers in 2 netns", 1, separate=True),
)


def _round(
    setup: Setup, schema: str, seeded: Seeded, d: Durations, spaces: list[Namespace]
) -> Load:
    """One round: the setup's servers started, 32 clients for 1 + d.round s, servers stopped
    (one setup at a time, so that idle pools do not hold PostgreSQL's connections)."""
    with contextlib.ExitStack() as stack:
        if setup.separate:
            servers = [
                stack.enter_context(
                    serving(
                        schema_url(schema, unix_socket=True),
                        workers=setup.workers,
                        host=ns.address,
                        port=8000,
                        namespace=ns.name,
                    )
                )
                for ns in spaces
            ]
        else:
            url = schema_url(schema)
            servers = [
                stack.enter_context(serving(url, workers=setup.workers, pool_size=setup.pool))
            ]
        return run_pairs(setup.label, servers, seeded, CLIENTS, 1.0, d.round, schema, show=False)


def bench_scale_out(d: Durations, tpcb_tps: float) -> list[Result]:
    """6: --workers 1, --workers 2 (and with pools as large as the clients, so that no
    connection is closed and opened again) and two servers in namespaces of their own
    (PostgreSQL listens on 127.0.0.1 only, so they reach it by its Unix socket), on the same
    schema, in alternating rounds of 32 clients. From the run without reconnects (whose
    sessions' CPU is all counted): PostgreSQL's CPU per pair, and the pairs/s PostgreSQL
    could do if the servers cost nothing."""
    accounts = [f"acct-{i:02d}" for i in range(CLIENTS)]
    setups = list(SETUPS)
    with fresh_schema() as schema:
        seeded = seed(schema_url(schema), accounts)
        with contextlib.ExitStack() as stack:
            spaces: list[Namespace] = []
            why_not = available()
            if why_not is None:
                spaces = stack.enter_context(namespaces(2))
            else:
                say(f"no network namespaces ({why_not}): two separate servers not measured")
                setups = [s for s in setups if not s.separate]
            rounds: dict[str, list[Load]] = {s.label: [] for s in setups}
            for _ in range(d.cycles):
                for setup in setups:
                    rounds[setup.label].append(_round(setup, schema, seeded, d, spaces))
    loads = {label: merged(f"{label}, 32 clients", runs) for label, runs in rounds.items()}
    for label, load in loads.items():
        load.activity = rounds[label][-1].activity
        say(
            load.describe() + f"\n        ({len(rounds[label])} alternating rounds; sessions: last)"
        )
    one = loads["--workers 1"]
    results: list[Result] = []
    for label, load in loads.items():
        if label != "--workers 1":
            results.append(
                Result(
                    f"6 scale-out: {label} / --workers 1, 32 clients",
                    load.rate,
                    "pairs/s",
                    one.rate,
                    "pairs/s --workers 1",
                    load.rate / one.rate if one.rate else None,
                )
            )
    for label, load in loads.items():
        results.append(
            Result(
                f"6 {label}: cores used by PostgreSQL (+ {load.cores('pg ended'):.2f} in "
                f"sessions closed; server {load.cores('server'):.2f}, "
                f"client {load.cores('client'):.2f}, other {load.cores('other'):.2f})",
                load.cores("postgres"),
                "cores",
            )
        )
    for label, load in loads.items():
        if load.spread and label != "--workers 1":
            results.append(busiest(f"6 {label}: connections on the busiest process", load))
    pooled = loads[f"--workers 2, CREDITMETER_POOL_SIZE={POOL}"]
    if pooled.done and pooled.cores("postgres") > 0:
        postgres_ms = pooled.cores("postgres") * 1000 / pooled.rate
        server_ms = pooled.cores("server") * 1000 / pooled.rate
        cores = os.cpu_count() or 1
        results += [
            Result(
                f"6 CPU per pair, pool {POOL} (no reconnects): PostgreSQL "
                f"(server {server_ms:.1f} ms)",
                postgres_ms,
                "ms",
            ),
            Result(
                f"6 ceiling if PostgreSQL alone had the {cores} cores",
                cores * 1000 / postgres_ms,
                "pairs/s",
                tpcb_tps,
                "tps pgbench TPC-B-like -c 8",
                cores * 1000 / postgres_ms / tpcb_tps if tpcb_tps else None,
            ),
        ]
    return results


def run(quick: bool) -> list[Result]:
    d = durations(quick)
    say(
        f"client {CLIENT_KIND}; {os.cpu_count()} cores shared by the load generator, "
        "the servers and PostgreSQL"
    )
    tpcb = pgb.tpcb(clients=8, jobs=2, seconds=d.pgbench)
    say(f"baseline {tpcb.text()}")
    hot = pgb.hot_row(clients=CLIENTS, jobs=2, seconds=d.pgbench)
    say(f"baseline {hot.text()}")
    results = bench_pairs(d, tpcb.tps)
    results += bench_hot(d, hot.tps)
    results += bench_batches(d, tpcb.tps)
    results += bench_scale_out(d, tpcb.tps)
    return results
