"""Authentication across server processes: each process has its own meter on one database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings
from tests.api.conftest import ADMIN_KEY, Keys
from tests.conftest import Clock


@pytest.fixture
def other_process(migrated_url: str, clock: Clock) -> Iterator[TestClient]:
    """A second server on the same database, as another worker process would be."""
    with CreditMeter(migrated_url, clock=clock) as meter:
        settings = ServerSettings(admin_key=SecretStr(ADMIN_KEY), worker=False, rate_limits=False)
        with TestClient(create_app(settings, meter=meter)) as client:
            yield client


def test_a_key_revoked_through_one_process_is_refused_by_another_at_once(
    client: TestClient, other_process: TestClient, keys: Keys
) -> None:
    [key] = [
        k
        for k in client.get("/v1/api-keys", headers=keys.header("superadmin")).json()["data"]
        if k["role"] == "service"
    ]
    read = other_process.get("/v1/accounts/acme/balance", headers=keys.header("service"))
    assert read.status_code == 200

    revoked = client.delete(f"/v1/api-keys/{key['id']}", headers=keys.header("superadmin"))
    assert revoked.status_code == 204

    refused = other_process.get("/v1/accounts/acme/balance", headers=keys.header("service"))
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "unauthenticated"
