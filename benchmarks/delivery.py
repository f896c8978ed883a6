"""Webhook deliveries by one worker, beside the usage rate that produces the events.

For each engine, one meter (one worker: ``meter.work`` in one thread, as ``creditmeter
worker`` runs it) and one endpoint at a receiver on loopback that answers 200 at once:

- **usage rate**: one-shot charges (``meter.charge``) recorded one after another in one
  thread, the rate at which the events' cause can come in through one process;
- **backlog drain**: 100,000 events (5,000 with ``--quick``) queued in the outbox at
  once, as after an outage, then run until none is left: each event's job fans out one
  ``webhook.deliver`` job, which signs it, POSTs it and logs the attempt. The time taken,
  and the events delivered per second.

The delivery rate is printed beside the usage rate; target: one worker delivers at least
1 % of the usage rate (an event per hundred usage events: threshold crossings, purchases
and grants are far rarer than usage). The drain time is beside the time the same number
of usage events takes to record. PostgreSQL is the one named by
``CREDITMETER_BENCH_POSTGRES_URL`` (the local server's ``test`` database by default), in
a new schema dropped at the end.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks import Result, compared
from creditmeter import CreditMeter
from creditmeter.store.tables import outbox

POSTGRES_URL = os.environ.get(
    "CREDITMETER_BENCH_POSTGRES_URL",
    os.environ.get(
        "CREDITMETER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
)
BACKLOG = 100_000
QUICK_BACKLOG = 5_000
CHARGES = 3_000
QUICK_CHARGES = 1_000
SHARE = 0.01
"""The least delivery rate, as a share of the usage rate, that the target asks for."""


@contextmanager
def receiver() -> Iterator[tuple[str, list[int]]]:
    """A receiver on loopback answering 200 with keep-alive; its URL and a count."""
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            count[0] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", count
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def database(engine: str) -> Iterator[str]:
    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="creditmeter-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'delivery.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        base = sa.make_url(POSTGRES_URL)
        options = {"options": f"-csearch_path={schema}"}
        yield base.update_query_dict(options).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


def usage_rate(meter: CreditMeter, charges: int) -> float:
    """One-shot charges recorded per second, one after another."""
    meter.put_feature("chat", rates={"tokens": 1})
    meter.put_plan("bench", allowances={"*": None})
    meter.create_account("usage", plan="bench")
    started = time.perf_counter()
    for n in range(charges):
        meter.charge("usage", "chat", usage={"tokens": 100 + n % 50})
    return charges / (time.perf_counter() - started)


def queue(meter: CreditMeter, events: int) -> None:
    """``events`` purchase events in the outbox at once, as a backlog."""
    now = datetime.now(UTC)
    rows = [
        {
            "id": f"job_bench_{n:07d}",
            "topic": "event.purchase.fulfilled",
            "payload": {"account_id": f"acct-{n % 100}", "purchase_id": f"pur_{n}", "credits": 100},
            "dedupe_key": None,
            "status": "pending",
            "attempts": 0,
            "run_at": now,
            "created_at": now,
        }
        for n in range(events)
    ]
    with meter.db.write() as conn:
        for start in range(0, events, 10_000):
            conn.execute(outbox.insert(), rows[start : start + 10_000])


def drain(meter: CreditMeter) -> int:
    ran = 0
    while done := meter.work(limit=100):
        ran += done
    return ran


def run(quick: bool) -> list[Result]:
    backlog = QUICK_BACKLOG if quick else BACKLOG
    charges = QUICK_CHARGES if quick else CHARGES
    results = []
    for engine, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        with database(engine) as url, receiver() as (hooks, received):
            with CreditMeter(url, webhook_allow_private=True) as meter:
                usage = usage_rate(meter, charges)
                meter.create_webhook_endpoint(hooks, event_types=["purchase.fulfilled"])
                queue(meter, backlog)
                started = time.perf_counter()
                ran = drain(meter)
                seconds = time.perf_counter() - started
                left = meter.jobs()
            assert received[0] == backlog, (received[0], backlog)
            assert ran == 2 * backlog, (ran, backlog)
            assert left["pending"] == left["dead"] == 0, left
        rate = backlog / seconds
        results.append(
            compared(
                f"{label}: webhook events delivered by one worker",
                rate,
                "events/s",
                usage,
                "usage events/s",
                target=f"≥ {SHARE:.0%} of the usage rate",
                meets=lambda ratio: ratio >= SHARE,
            )
        )
        results.append(
            compared(
                f"{label}: drain a backlog of {backlog:,} events",
                seconds,
                "s",
                backlog / usage,
                f"s to record {backlog:,} usage events",
                target="for information",
                meets=None,
            )
        )
    return results
