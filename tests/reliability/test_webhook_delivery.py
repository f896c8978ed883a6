"""Outgoing webhooks under faults, on SQLite and PostgreSQL: a worker process killed
with SIGKILL while a receiver holds its request; a receiver that is down for hours and
then answers 500 to some deliveries it applied. Receivers verify every signature and
deduplicate by ``webhook-id``: every event is applied exactly once, none is lost, and a
delivery sent again carries the same id."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook

from creditmeter import CreditMeter
from creditmeter.store import outbox
from creditmeter.store.tables import outbox as outbox_table
from tests.conftest import Clock
from tests.reliability.conftest import Reliability
from tests.service.smtp import free_port

WAIT_SECONDS = 60.0


@dataclass
class Receiver:
    """A receiver that verifies each delivery, applies each event id once, and answers
    with ``answer(webhook_id, seen_before)``."""

    secret: str = ""
    port: int = field(default_factory=free_port)
    received: list[str] = field(default_factory=list)
    applied: Counter[str] = field(default_factory=Counter)
    hold_first: bool = False
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    fail_after_applying: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    fresh: bool = True
    """Refuse a timestamp five minutes off this process's clock (``Webhook.verify``);
    ``False`` for a sender on a test's clock, whose signatures are still checked."""

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        event_id = headers["webhook-id"]
        if self.fresh:
            event = Webhook(self.secret).verify(body, headers)
        else:
            signed = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
            expected = Webhook(self.secret).sign(event_id, signed, body)
            assert expected in headers["webhook-signature"].split(" ")
            event = json.loads(body)
        assert event["id"] == event_id
        with self.lock:
            first = not self.received
            self.received.append(event_id)
            if event_id not in self.applied:
                self.applied[event_id] += 1
            if event_id in self.fail_after_applying:
                self.fail_after_applying.discard(event_id)
                return 500
        if first and self.hold_first:
            self.arrived.set()
            self.released.wait()
        return 200


@contextmanager
def listening(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = receiver.handle(dict(self.headers.items()), body)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # its sender was killed

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.shutdown()
        server.server_close()
        thread.join()


def queue_events(meter: CreditMeter, count: int, at: datetime) -> list[str]:
    ids = [f"job_evt_{n:05d}" for n in range(count)]
    with meter.db.write() as conn:
        for n, job_id in enumerate(ids):
            payload = {"account_id": f"a{n % 7}", "purchase_id": f"pur_{n}", "reason": "x"}
            outbox.enqueue(conn, job_id, "event.purchase.failed", payload, at)
    return ids


def start_worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CREDITMETER_WEBHOOK_ALLOW_PRIVATE": "true", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "creditmeter.cli.main", "worker", "--interval", "0.05"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*command, "--log-format", "text", "--database-url", database_url],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_for(condition: Any, what: str, log: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen in {WAIT_SECONDS} s:\n{log.read_text()}")


def test_a_worker_killed_mid_delivery_delivers_after_restart_with_the_same_id(
    meter: CreditMeter, migrated_url: str, tmp_path: Path
) -> None:
    meter.webhook_allow_private = True
    receiver = Receiver(hold_first=True)
    endpoint, receiver.secret = meter.create_webhook_endpoint(receiver.url)
    [event_id] = queue_events(meter, 1, datetime.now(UTC))
    log = tmp_path / "worker.log"

    with listening(receiver):
        worker = start_worker(migrated_url, log)
        try:
            wait_for(receiver.arrived.is_set, "the first delivery", log)
            worker.send_signal(signal.SIGKILL)  # the receiver holds the request: mid-delivery
            assert worker.wait(timeout=10) == -signal.SIGKILL
        finally:
            worker.kill()
            worker.wait()
        assert meter.webhook_deliveries(endpoint.id) == [], "no answer was recorded"
        with meter.db.write() as conn:  # as when its lease runs out, a minute on
            conn.execute(
                outbox_table.update()
                .where(outbox_table.c.topic == "webhook.deliver")
                .values(run_at=datetime.now(UTC))
            )

        worker = start_worker(migrated_url, log)
        try:
            wait_for(lambda: len(receiver.received) == 2, "the second delivery", log)
            wait_for(lambda: meter.jobs()["pending"] == 0, "the job's end", log)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)

    assert receiver.received == [event_id, event_id], "the same webhook-id both times"
    assert receiver.applied == {event_id: 1}
    [delivered] = meter.webhook_deliveries(endpoint.id)
    assert (delivered.event_id, delivered.attempt, delivered.status_code) == (event_id, 2, 200)
    assert meter.jobs()["dead"] == 0


def test_a_receiver_down_for_hours_gets_everything_once_back(
    meter: CreditMeter, clock: Clock, reliability: Reliability
) -> None:
    rng = random.Random(reliability.seed)
    meter.retry_random = random.Random(reliability.seed)
    meter.webhook_allow_private = True
    meter.webhook_disable_after = 10**6
    receiver = Receiver(fresh=False)
    endpoint, receiver.secret = meter.create_webhook_endpoint(receiver.url)
    events = queue_events(meter, 40 * reliability.scale, clock.now)
    receiver.fail_after_applying = set(rng.sample(events, len(events) // 4))

    def drain() -> None:
        while meter.work(limit=50):
            pass

    def retry() -> None:
        """Move the clock to when every pending delivery is due again."""
        logged = meter.webhook_deliveries(endpoint.id, limit=100_000)
        clock.now = max([clock.now, *(d.next_retry_at for d in logged if d.next_retry_at)])

    drain()  # nothing listens: every delivery fails
    for _ in range(6):  # ... for an hour and a half and more
        retry()
        drain()
    assert receiver.received == []
    assert meter.jobs()["pending"] == len(events)

    with listening(receiver):
        for _ in range(3):  # the next retries, then those of the 500s
            retry()
            drain()

    assert sorted(receiver.applied) == sorted(events), "nothing lost"
    assert set(receiver.applied.values()) == {1}, "nothing applied twice"
    repeats = len(receiver.received) - len(events)
    assert repeats == len(events) // 4, "each event answered 500 came once more"
    assert meter.jobs() == {"pending": 0, "done": 2 * len(events), "dead": 0}
