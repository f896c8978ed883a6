"""Errors that are no one's fault but the moment's: a lock not granted in time is a 503
the client may retry, on both engines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings
from creditmeter.store.database import Timeouts
from tests.api.conftest import ADMIN_KEY
from tests.conftest import Clock
from tests.service.test_retries import account_locked


@pytest.fixture
def impatient(migrated_url: str, clock: Clock) -> Iterator[CreditMeter]:
    """A meter that waits a fifth of a second for a lock."""
    with CreditMeter(migrated_url, clock=clock, timeouts=Timeouts(lock=0.2)) as meter:
        meter.put_feature("chat", rates={"calls": 1})
        meter.create_account("acme")
        meter.grant("acme", 100, source="purchase")
        yield meter


def test_a_lock_not_granted_in_time_is_503_busy_with_retry_after_and_writes_nothing(
    impatient: CreditMeter, migrated_url: str
) -> None:
    settings = ServerSettings(admin_key=SecretStr(ADMIN_KEY), worker=False, sweep_interval=0)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Idempotency-Key": "charge-1"}
    body = {"account": "acme", "feature": "chat", "credits": 7}
    with TestClient(create_app(settings, meter=impatient)) as client:
        with account_locked(migrated_url, "acme"):
            waited = client.post("/v1/usage", json=body, headers=headers)
        assert waited.status_code == 503
        assert waited.headers["Retry-After"] == "1"
        error = waited.json()["error"]
        assert error["type"] == "busy"
        assert "not granted within 0.2 s" in error["message"]
        assert impatient.balance("acme").available == 100
        assert not impatient.usage("acme").data

        again = client.post("/v1/usage", json=body, headers=headers)
        assert again.status_code == 200
        assert impatient.balance("acme").available == 93
        assert [u.id for u in impatient.usage("acme").data] == [again.json()["id"]]
