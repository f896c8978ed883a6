"""An app over the ``meter`` fixture (so once per engine) and a key for every role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings

ADMIN_KEY = "test-admin-key-of-at-least-32-characters"


@dataclass(frozen=True)
class Keys:
    """A secret for each role; ``account`` is the key of account ``acme``, ``other`` the key
    of account ``globex``."""

    service: str
    admin: str
    superadmin: str
    account: str
    other: str

    def header(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, role)}"}


@pytest.fixture
def client(meter: CreditMeter) -> Iterator[TestClient]:
    """No worker thread: a test runs the jobs itself, with ``meter.work()``. No rate limits
    on the test's clock, which stands still: test_rate_limits.py moves it."""
    settings = ServerSettings(admin_key=SecretStr(ADMIN_KEY), worker=False, rate_limits=False)
    app = create_app(settings, meter=meter)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def keys(meter: CreditMeter) -> Keys:
    """Accounts ``acme`` and ``globex`` (no plan) and a key of every role."""
    meter.create_account("acme", name="Acme")
    meter.create_account("globex", name="Globex")
    return Keys(
        service=meter.create_api_key("service")[1],
        admin=meter.create_api_key("admin")[1],
        superadmin=meter.create_api_key("superadmin")[1],
        account=meter.create_api_key("account", account_id="acme")[1],
        other=meter.create_api_key("account", account_id="globex")[1],
    )
