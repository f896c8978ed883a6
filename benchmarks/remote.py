"""The database one hop away: authorize + settle pairs through a relay that adds latency.

On this machine a round trip to PostgreSQL takes some 50 µs, so how many a use case makes
hardly shows; in production the database is on another host, every round trip costs, and
the round trips made while an account's row is locked keep that account's other requests
waiting. Here every connection goes through ``benchmarks.relay``, a subprocess that
forwards each chunk DELAY_MS after it arrived in either direction (a round trip of about
1 ms), and counts the turns: a server's answer after the client spoke.

- the relay's round trip: the median of 200 × ``SELECT 1`` (psycopg, autocommit) through
  it, beside the same straight to PostgreSQL;
- sequential ``authorize(credits=10)`` + ``settle(credits=7)`` pairs on one account, each
  call with its own idempotency key (as the service's clients send them):
  pairs/s against ``pgbench`` TPC-B-like ``-c 1`` through the same relay, alternating the
  two in rounds; a pair is two use cases, each its own transaction, and a TPC-B-like
  transaction one (``BEGIN``, three ``UPDATE``, a ``SELECT``, an ``INSERT``, ``END``).
  Their time in round trips (ms each ÷ the round trip measured in the same round: the
  round trips, and the client's and PostgreSQL's own work besides), and the round trips
  the relay counted for each (pgbench's count includes its connection and set-up, a few
  turns in thousands);
- 8 threads doing pairs at once on one hot account (a pool of 16): pairs/s against the
  sequential pairs; then ``verify`` must find no violation, and no pair may have failed.

Every figure but the last is for information. The schema is fresh and seeded through the
library straight to PostgreSQL; the relay is stopped at the end, whatever happened.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psycopg
import sqlalchemy as sa
from psycopg.conninfo import make_conninfo

from benchmarks import Result, absolute, compared, median
from benchmarks import pgbench as pgb
from benchmarks.server import FEATURE, POSTGRES_URL, fresh_schema, schema_url, seed
from creditmeter import CreditMeter

DELAY_MS = 0.25
"""The relay's delay each way; with its own overhead, a round trip of about 1 ms."""
RELAY_HOST = "127.0.0.1"
PINGS = 200
WARMUP_PINGS = 20
HELD = 10
CHARGED = 7
THREADS = 8
POOL_SIZE = 16
SEQUENTIAL = "acct-sequential"
HOT = "acct-hot"
MAX_PAIRS = 1_000_000
"""A bound on every loop of pairs besides its deadline."""


@dataclass(frozen=True)
class Durations:
    rounds: int
    pgbench: int
    pairs: float
    hot: float
    warmup: float


def durations(quick: bool) -> Durations:
    if quick:
        return Durations(rounds=1, pgbench=3, pairs=3.0, hot=3.0, warmup=0.5)
    return Durations(rounds=3, pgbench=8, pairs=8.0, hot=10.0, warmup=1.0)


def say(text: str) -> None:
    print(f"[remote] {text}", file=sys.stderr, flush=True)


@dataclass
class Relay:
    """A running ``benchmarks.relay``: its port, and the turns it has counted (asked on
    its standard input, answered on its standard output)."""

    port: int
    requests: IO[str]
    answers: IO[str]

    @property
    def address(self) -> tuple[str, int]:
        return RELAY_HOST, self.port

    def turns(self) -> int:
        self.requests.write("turns\n")
        self.requests.flush()
        return int(self.answers.readline())

    def url(self, url: str) -> str:
        """``url`` with the relay in the place of PostgreSQL's host and port."""
        relayed = sa.make_url(url).set(host=RELAY_HOST, port=self.port)
        return relayed.render_as_string(hide_password=False)


@contextmanager
def relay(delay_ms: float) -> Iterator[Relay]:
    """``python -m benchmarks.relay`` in front of PostgreSQL; at the end, its standard
    input is closed, which ends it, and it is killed if it is still there 5 s later."""
    upstream = sa.make_url(POSTGRES_URL)
    command = [sys.executable, "-m", "benchmarks.relay", "0", str(delay_ms)]
    command.append(f"{upstream.host or '127.0.0.1'}:{upstream.port or 5432}")
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    requests, answers = process.stdin, process.stdout
    assert requests is not None
    assert answers is not None
    try:
        line = answers.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"the relay did not start: {line!r}, exit {process.poll()}")
        yield Relay(int(line.split()[1]), requests, answers)
    finally:
        requests.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def round_trip_ms(host: str, port: int) -> float:
    """The median of PINGS × ``SELECT 1`` on one autocommit connection to ``host:port``
    (the relay, or PostgreSQL itself)."""
    url = sa.make_url(POSTGRES_URL)
    conninfo = make_conninfo(
        "", host=host, port=port, user=url.username, password=url.password, dbname=url.database
    )
    samples: list[float] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for i in range(WARMUP_PINGS + PINGS):
            start = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            if i >= WARMUP_PINGS:
                samples.append(time.perf_counter() - start)
    return median(samples) * 1000


def pair(meter: CreditMeter, account: str) -> None:
    """A pair as the service's clients make one: each call with its own idempotency key."""
    key = uuid.uuid4().hex
    hold = meter.authorize(account, FEATURE, credits=HELD, idempotency_key=f"{key}-h")
    meter.settle(hold.id, credits=CHARGED, idempotency_key=f"{key}-s")


def sequential(meter: CreditMeter, seconds: float) -> int:
    """Pairs done one after another in ``seconds`` (the last one finishing after)."""
    done = 0
    deadline = time.perf_counter() + seconds
    while done < MAX_PAIRS and time.perf_counter() < deadline:
        pair(meter, SEQUENTIAL)
        done += 1
    return done


@dataclass(frozen=True)
class Concurrent:
    pairs: int
    seconds: float
    errors: Counter[str]


def concurrent(meter: CreditMeter, seconds: float) -> Concurrent:
    """THREADS threads doing pairs on the hot account until ``seconds`` have passed; a
    failed pair is counted by its exception's type, and the thread goes on."""
    counts = [0] * THREADS
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    began = time.perf_counter()
    deadline = began + seconds

    def work(index: int) -> None:
        while counts[index] < MAX_PAIRS and time.perf_counter() < deadline:
            try:
                pair(meter, HOT)
                counts[index] += 1
            except Exception as error:
                with lock:
                    errors[type(error).__name__] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Concurrent(sum(counts), time.perf_counter() - began, errors)


@dataclass(frozen=True)
class Round:
    round_trip_ms: float
    pairs_per_second: float
    pair_turns: float
    tps: float
    transaction_ms: float
    transaction_turns: float

    @property
    def pair_ms(self) -> float:
        return 1000 / self.pairs_per_second


def measure_round(link: Relay, meter: CreditMeter, d: Durations, label: str) -> Round:
    """The round trip, pgbench through the relay, then sequential pairs."""
    rtt = round_trip_ms(*link.address)
    before = link.turns()
    tpcb = pgb.tpcb(clients=1, jobs=1, seconds=d.pgbench, via=link.address)
    transaction_turns = (link.turns() - before) / tpcb.transactions
    say(f"{label}: round trip {rtt:.3f} ms; baseline through the relay {tpcb.text()}")
    before, began = link.turns(), time.perf_counter()
    pairs = sequential(meter, d.pairs)
    rate = pairs / (time.perf_counter() - began)
    pair_turns = (link.turns() - before) / pairs
    measured = Round(rtt, rate, pair_turns, tpcb.tps, tpcb.latency_ms, transaction_turns)
    say(
        f"{label}: {pairs} sequential pairs, {rate:,.0f} pairs/s, {measured.pair_ms:.2f} ms "
        f"a pair = {measured.pair_ms / rtt:.1f} round trips' time, {pair_turns:.1f} turns "
        f"counted; TPC-B-like {tpcb.latency_ms:.2f} ms = {tpcb.latency_ms / rtt:.1f} round "
        f"trips' time, {transaction_turns:.1f} turns counted"
    )
    return measured


def run(quick: bool) -> list[Result]:
    d = durations(quick)
    postgres = sa.make_url(POSTGRES_URL)
    direct_ms = round_trip_ms(postgres.host or "127.0.0.1", postgres.port or 5432)
    rounds: list[Round] = []
    with fresh_schema() as schema, relay(DELAY_MS) as link:
        url = schema_url(schema)
        seed(url, [SEQUENTIAL, HOT])
        say(f"relay on port {link.port}, {DELAY_MS} ms each way; direct: {direct_ms:.3f} ms")
        with CreditMeter(link.url(url), migrate=False) as meter:
            sequential(meter, d.warmup)
            for i in range(d.rounds):
                rounds.append(measure_round(link, meter, d, f"round {i + 1}/{d.rounds}"))
        with CreditMeter(link.url(url), migrate=False, pool_size=POOL_SIZE) as meter:
            concurrent(meter, d.warmup)
            before = link.turns()
            hot = concurrent(meter, d.hot)
            hot_turns = (link.turns() - before) / hot.pairs if hot.pairs else float("nan")
        after_ms = round_trip_ms(*link.address)
        with CreditMeter(url, migrate=False) as meter:
            violations = meter.verify()
    hot_rate = hot.pairs / hot.seconds
    rtt = median([r.round_trip_ms for r in rounds])
    say(
        f"hot account, {THREADS} threads: {hot.pairs} pairs, {hot_rate:,.0f} pairs/s, "
        f"{1000 / hot_rate / rtt:.1f} round trips' time between pairs, {hot_turns:.1f} turns "
        f"counted a pair; errors {dict(hot.errors)}; {len(violations)} violations"
    )
    for violation in violations:
        say(f"PROBLEM verify: {violation}")
    say(f"round trip through the relay after it all: {after_ms:.3f} ms")
    sequential_rate = median([r.pairs_per_second for r in rounds])
    pair_ms = median([r.pair_ms for r in rounds])
    transaction_ms = median([r.transaction_ms for r in rounds])
    pair_trips = median([r.pair_ms / r.round_trip_ms for r in rounds])
    transaction_trips = median([r.transaction_ms / r.round_trip_ms for r in rounds])
    pair_turns = median([r.pair_turns for r in rounds])
    transaction_turns = median([r.transaction_turns for r in rounds])
    return [
        compared(
            f"remote round trip, relay {DELAY_MS} ms each way",
            rtt,
            "ms",
            direct_ms,
            "ms direct",
            target="(information)",
            meets=None,
        ),
        compared(
            "remote authorize+settle, sequential",
            sequential_rate,
            "pairs/s",
            median([r.tps for r in rounds]),
            "tps pgbench TPC-B-like -c 1",
            target="(information)",
            meets=None,
            ratio=median([r.pairs_per_second / r.tps for r in rounds]),
        ),
        compared(
            "  ms a pair",
            pair_ms,
            "ms",
            transaction_ms,
            "ms a TPC-B-like transaction",
            target="(information)",
            meets=None,
            ratio=median([r.pair_ms / r.transaction_ms for r in rounds]),
        ),
        compared(
            "  a pair in round trips' time",
            pair_trips,
            "round trips",
            transaction_trips,
            "a TPC-B-like transaction",
            target="(information)",
            meets=None,
        ),
        compared(
            "  round trips a pair, counted by the relay",
            pair_turns,
            "round trips",
            transaction_turns,
            "a TPC-B-like transaction",
            target="(information)",
            meets=None,
        ),
        compared(
            f"remote hot account, {THREADS} threads",
            hot_rate,
            "pairs/s",
            sequential_rate,
            "pairs/s sequential",
            target="(information)",
            meets=None,
        ),
        absolute(
            "  hot account violations and failed pairs",
            len(violations) + hot.errors.total(),
            "found",
            target="0 (verify empty, no errors)",
            meets=lambda n: n == 0,
        ),
    ]
