from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings
from creditmeter.events.sweeper import Sweeper, sweep_all
from tests.conftest import Clock


def hold_status(meter: CreditMeter, hold_id: str) -> str:
    """Read straight from the table: ``meter.hold`` would bring the account up to date."""
    with meter.db.engine.connect() as conn:
        status: str = conn.execute(
            sa.text("SELECT status FROM holds WHERE id = :id"), {"id": hold_id}
        ).scalar_one()
    return status


def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def idle_holds(meter: CreditMeter, clock: Clock, accounts: int) -> list[str]:
    """A hold of 10 minutes on each of ``accounts`` accounts, then 11 minutes of quiet."""
    meter.put_feature("chat", rates={"tokens": 1})
    holds = []
    for n in range(accounts):
        meter.create_account(f"a{n}")
        meter.grant(f"a{n}", 100)
        hold = meter.authorize(f"a{n}", "chat", credits=40, ttl=timedelta(minutes=10))
        holds.append(hold.id)
    clock.advance(minutes=11)
    return holds


def test_sweep_all_releases_every_expired_hold_once(meter: CreditMeter, clock: Clock) -> None:
    holds = idle_holds(meter, clock, accounts=3)
    assert [hold_status(meter, h) for h in holds] == ["pending"] * 3

    assert sweep_all(meter) == 3
    assert [hold_status(meter, h) for h in holds] == ["expired"] * 3
    assert sweep_all(meter) == 0
    assert meter.balance("a0").available == 100
    assert meter.verify() == []


def test_the_sweeper_thread_sweeps_on_its_own(meter: CreditMeter, clock: Clock) -> None:
    [hold] = idle_holds(meter, clock, accounts=1)
    sweeper = Sweeper(meter, interval=0.05)
    sweeper.start()
    try:
        assert eventually(lambda: hold_status(meter, hold) == "expired")
    finally:
        sweeper.stop()
    assert meter.verify() == []


def test_the_server_runs_a_sweeper_while_it_serves(meter: CreditMeter, clock: Clock) -> None:
    [hold] = idle_holds(meter, clock, accounts=1)
    settings = ServerSettings(admin_key=SecretStr("k" * 32), sweep_interval=0.05)
    with TestClient(create_app(settings, meter=meter)):
        assert eventually(lambda: hold_status(meter, hold) == "expired")


def test_no_sweeper_when_the_interval_is_zero(meter: CreditMeter, clock: Clock) -> None:
    [hold] = idle_holds(meter, clock, accounts=1)
    settings = ServerSettings(admin_key=SecretStr("k" * 32), sweep_interval=0)
    with TestClient(create_app(settings, meter=meter)) as client:
        assert client.get("/healthz").status_code == 200
        time.sleep(0.3)
    assert hold_status(meter, hold) == "pending"
