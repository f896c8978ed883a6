from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from creditmeter import CreditMeter
from creditmeter.core.payments import PurchaseStatus
from creditmeter.payments.dev import DevProvider
from tests.cli.conftest import assert_one_line_error, run

SUCCESS_URL = "https://example.com/done"
WAIT_SECONDS = 20.0


@pytest.fixture(autouse=True)
def development_payments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITMETER_PAYMENTS", "dev")
    monkeypatch.delenv("CREDITMETER_WORKER_INTERVAL", raising=False)


def paid_checkouts(meter: CreditMeter, accounts: int, each: int = 1) -> list[str]:
    """Purchases paid at the development provider whose events no worker applied yet."""
    provider = meter.payments
    assert isinstance(provider, DevProvider)
    meter.put_package("small", credits=100, price=999, currency="usd")
    paid = []
    for n in range(accounts):
        meter.create_account(f"acct-{n}")
        for _ in range(each):
            started = meter.checkout(f"acct-{n}", "small", success_url=SUCCESS_URL)
            provider.complete(meter.purchase(started.purchase_id))
            paid.append(started.purchase_id)
    return paid


def statuses(meter: CreditMeter, purchase_ids: list[str]) -> set[PurchaseStatus]:
    return {meter.purchase(p).status for p in purchase_ids}


def jobs_ran(output: str) -> int:
    found = re.search(r"^ok: ([\d,]+) jobs? ran;", output, re.MULTILINE)
    assert found is not None, output
    return int(found.group(1).replace(",", ""))


def worker_process(database_url: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CREDITMETER_PAYMENTS": "dev"}
    command = [sys.executable, "-m", "creditmeter.cli.main", "worker"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, "--database-url", database_url, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_for(
    condition: str, check: Callable[[], bool], process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        if process.poll() is not None:
            pytest.fail(f"the worker exited {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    pytest.fail(f"{condition} not within {WAIT_SECONDS} s:\n{log.read_text()}")


def test_once_runs_the_due_jobs_then_exits(
    runner: CliRunner, library: CreditMeter, migrated_url: str
) -> None:
    paid = paid_checkouts(library, accounts=2)
    assert statuses(library, paid) == {PurchaseStatus.PENDING}
    first = run(runner, "worker", "--once", "--database-url", migrated_url)
    assert first.exit_code == 0, first.output
    assert jobs_ran(first.stdout) >= len(paid)
    assert statuses(library, paid) == {PurchaseStatus.FULFILLED}
    assert library.balance("acct-0").purchased_available == 100
    again = run(runner, "worker", "--once", "--database-url", migrated_url)
    assert again.stdout == "ok: 0 jobs ran; 0 pending, 0 dead\n"
    assert library.verify() == []


def test_the_worker_refuses_a_missing_database_or_stripe_without_keys(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert_one_line_error(
        run(runner, "worker", "--once", "--database-url", missing),
        containing="creditmeter migrate",
    )
    monkeypatch.setenv("CREDITMETER_PAYMENTS", "stripe")
    monkeypatch.delenv("CREDITMETER_STRIPE_SECRET_KEY", raising=False)
    assert_one_line_error(
        run(runner, "worker", "--once", "--database-url", missing),
        containing="payments=stripe needs CREDITMETER_STRIPE_SECRET_KEY",
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_worker_applies_payments_until_it_is_stopped(
    migrated_sqlite_url: str, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    log = tmp_path / "worker.log"
    with CreditMeter(migrated_sqlite_url) as meter:
        process = worker_process(
            migrated_sqlite_url, log, "--interval", "0.1", "--log-format", "text"
        )
        try:
            started = "Ctrl-C or SIGTERM stops it"
            wait_for("the start", lambda: started in log.read_text(), process, log)
            assert "payments through the development provider" in log.read_text()
            paid = paid_checkouts(meter, accounts=1, each=2)
            fulfilled = {PurchaseStatus.FULFILLED}
            wait_for("the payments", lambda: statuses(meter, paid) == fulfilled, process, log)
            notified = "event.purchase.fulfilled"
            wait_for("the events", lambda: log.read_text().count(notified) == 2, process, log)
        finally:
            process.send_signal(stop_signal)
            status = process.wait(timeout=15)
    assert status == 0, log.read_text()
    assert log.read_text().splitlines()[-1] == "creditmeter worker stopped"


def test_workers_at_once_on_postgresql_run_each_job_once(
    migrated_postgresql_url: str, tmp_path: Path
) -> None:
    with CreditMeter(migrated_postgresql_url) as meter:
        paid = paid_checkouts(meter, accounts=10, each=5)
        logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
        processes = [worker_process(migrated_postgresql_url, log, "--once") for log in logs]
        assert [p.wait(timeout=60) for p in processes] == [0, 0]
        ran = sum(jobs_ran(log.read_text()) for log in logs)
        jobs = meter.jobs()
        assert jobs["pending"] == jobs["dead"] == 0
        assert ran == jobs["done"] >= len(paid)
        assert statuses(meter, paid) == {PurchaseStatus.FULFILLED}
        assert {meter.balance(f"acct-{n}").purchased_available for n in range(10)} == {500}
        assert meter.verify() == []
