"""The outbox's jobs on both engines: retried with backoff, leased so that a dead worker's
job runs again, once in effect; a worker process killed mid-job included."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from creditmeter import CreditMeter
from creditmeter.events.jobs import Worker
from creditmeter.service.jobs import MAX_ATTEMPTS, backoff
from creditmeter.store import outbox
from creditmeter.store.tables import outbox as outbox_table
from tests.conftest import Clock
from tests.service.payment_events import deliver, drain, session_completed

LEASE = timedelta(seconds=60)


def queue(meter: CreditMeter, topic: str, clock: Clock) -> None:
    with meter.db.write() as conn:
        outbox.enqueue(conn, f"job_{topic}", topic, {}, clock.now)


@pytest.fixture
def paid(meter: CreditMeter) -> str:
    """A purchase of 1,100 credits by ``acme`` whose payment event is received and its
    job queued, not run."""
    meter.put_package("starter", credits=1000, bonus_credits=100, price=999, currency="usd")
    meter.create_account("acme")
    checkout = meter.checkout("acme", "starter", success_url="https://a/ok")
    deliver(
        meter, "checkout.session.completed", session_completed(meter.purchase(checkout.purchase_id))
    )
    return checkout.purchase_id


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 11, 12, 30)] == [
        2,
        4,
        8,
        2048,
        3600,
        3600,
    ]


def test_a_failing_job_is_retried_with_backoff_then_kept_dead(
    meter: CreditMeter, clock: Clock
) -> None:
    queue(meter, "no.such.topic", clock)
    assert meter.work() == 1
    assert meter.work() == 0  # not due again for 2 s
    for attempt in range(1, MAX_ATTEMPTS):
        clock.advance(seconds=backoff(attempt).total_seconds())
        assert meter.work() == 1
    assert meter.jobs() == {"pending": 0, "done": 0, "dead": 1}
    with meter.db.read() as conn:
        error = conn.execute(sa.select(outbox_table.c.last_error)).scalar_one()
    assert "KeyError" in error


def test_a_leased_job_is_not_taken_again_until_its_lease_runs_out(
    meter: CreditMeter, clock: Clock, paid: str
) -> None:
    with meter.db.write() as conn:  # a worker takes the job and dies
        assert len(outbox.take(conn, clock.now, LEASE, 10)) == 1
    assert meter.work() == 0
    clock.advance(seconds=59)
    assert meter.work() == 0
    clock.advance(seconds=2)
    assert drain(meter) >= 1
    assert meter.balance("acme").available == 1100
    assert meter.jobs()["pending"] == 0


def test_a_job_whose_lease_ran_out_cannot_be_finished_by_its_first_worker(
    meter: CreditMeter, clock: Clock, paid: str
) -> None:
    with meter.db.write() as conn:
        [first] = outbox.take(conn, clock.now, LEASE, 10)
    clock.advance(seconds=61)
    with meter.db.write() as conn:
        [second] = outbox.take(conn, clock.now, LEASE, 10)
        assert second.attempts == first.attempts + 1
    with meter.db.write() as conn:
        assert not outbox.finish(conn, first, clock.now)
        assert outbox.finish(conn, second, clock.now)


def test_the_worker_thread_runs_jobs_as_they_are_queued(meter: CreditMeter, paid: str) -> None:
    worker = Worker(meter, interval=0.05)
    worker.start()
    try:
        for _ in range(200):
            if meter.balance("acme").available:
                break
            time.sleep(0.02)
    finally:
        worker.stop()
    assert meter.balance("acme").available == 1100
    assert meter.job_listeners == []


KILLED_WORKER = """
import os, signal, sys
from creditmeter import CreditMeter

url, moment = sys.argv[1], sys.argv[2]
meter = CreditMeter(url, migrate=False)
apply = meter.apply_payment_event

def dying(event_id):
    if moment == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    apply(event_id)
    os.kill(os.getpid(), signal.SIGKILL)  # applied and committed, not marked done

meter.apply_payment_event = dying
meter.work()
"""


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_worker_killed_mid_job_leaves_it_to_run_again_once_in_effect(
    meter: CreditMeter, migrated_url: str, clock: Clock, paid: str, moment: str
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WORKER, migrated_url, moment],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    clock.now = datetime.now(UTC)  # the worker ran on the real clock
    applied_by_the_dead = meter.balance("acme").available
    assert applied_by_the_dead == (1100 if moment == "after" else 0)

    clock.advance(seconds=LEASE.total_seconds() + 5)  # its lease ran out
    assert drain(meter) >= 1

    assert meter.balance("acme").available == 1100
    assert len(list(meter.iter_transactions("acme", types=("purchase",)))) == 1
    assert [e["status"] for e in meter.payment_events()] == ["applied"]
    left = meter.jobs()
    assert (left["pending"], left["dead"]) == (0, 0)
    assert meter.verify() == []


def test_a_recharge_queued_by_a_charge_wakes_the_worker(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"calls": 1})
    meter.put_package("refill", credits=500, price=500, currency="usd")
    meter.create_account("acme")
    meter.grant("acme", 1000)
    meter.set_auto_recharge(
        "acme", enabled=True, threshold=300, package="refill", payment_method="pm_dev_visa"
    )
    worker = Worker(meter, interval=3600)  # it would not look again by itself
    worker.start()
    try:
        meter.charge("acme", "chat", usage={"calls": 800})
        deadline = time.monotonic() + 10
        while meter.balance("acme").available != 700:
            assert time.monotonic() < deadline, "the worker was not woken"
            time.sleep(0.02)
    finally:
        worker.stop()
