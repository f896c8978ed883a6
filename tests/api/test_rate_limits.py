"""Rate limits over HTTP: a bucket for each key, one for each address without a valid key,
refilled as the clock moves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings
from tests.api.conftest import ADMIN_KEY, Keys
from tests.conftest import Clock

Server = Callable[..., TestClient]


@pytest.fixture
def server(meter: CreditMeter) -> Iterator[Server]:
    """Apps over ``meter`` with the rate limits given, each seen from a client address."""
    clients: list[TestClient] = []

    def start(address: str = "203.0.113.7", **limits: Any) -> TestClient:
        settings = ServerSettings(admin_key=SecretStr(ADMIN_KEY), worker=False, **limits)
        client = TestClient(create_app(settings, meter=meter), client=(address, 40000))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def statuses(client: TestClient, path: str, times: int, **headers: str) -> list[int]:
    return [client.get(path, headers=headers).status_code for _ in range(times)]


def test_a_key_over_its_limit_is_told_when_to_retry_and_served_once_its_bucket_refills(
    server: Server, keys: Keys, clock: Clock
) -> None:
    client = server(rate_limit_account_key="4/second")
    balance = "/v1/accounts/acme/balance"

    served = statuses(client, balance, 4, **keys.header("account"))
    refused = client.get(balance, headers=keys.header("account"))
    clock.advance(seconds=1)
    again = statuses(client, balance, 5, **keys.header("account"))

    assert served == [200, 200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {
        "error": {
            "type": "rate_limited",
            "message": "too many requests; retry in 1 s",
            "retry_after": 1,
        }
    }
    assert again == [200, 200, 200, 200, 429]


def test_each_key_has_its_own_bucket_and_staff_keys_none_by_default(
    server: Server, keys: Keys
) -> None:
    client = server(rate_limit_account_key="2/minute")
    acme, globex = "/v1/accounts/acme/balance", "/v1/accounts/globex/balance"

    assert statuses(client, acme, 3, **keys.header("account")) == [200, 200, 429]
    assert statuses(client, globex, 2, **keys.header("other")) == [200, 200]
    assert set(statuses(client, acme, 30, **keys.header("service"))) == {200}
    assert client.get(acme, headers=keys.header("account")).headers["retry-after"] == "30"


def test_staff_keys_are_limited_when_configured(server: Server, keys: Keys) -> None:
    client = server(rate_limit_staff_key="2/hour")

    assert statuses(client, "/v1/accounts", 3, **keys.header("admin")) == [200, 200, 429]
    assert statuses(client, "/v1/accounts", 1, Authorization=f"Bearer {ADMIN_KEY}") == [200]


def test_requests_without_a_valid_key_are_limited_by_client_address(
    server: Server, keys: Keys, clock: Clock
) -> None:
    client = server(rate_limit_address="2/second")
    neighbour = server("198.51.100.9", rate_limit_address="2/second")

    assert statuses(client, "/healthz", 2) == [200, 200]
    assert statuses(client, "/healthz", 1, Authorization="Bearer cm_not_a_key") == [429]
    assert statuses(client, "/v1/accounts", 1, Authorization="Bearer cm_not_a_key") == [429]
    assert statuses(client, "/docs", 1) == [429]
    assert statuses(client, "/healthz", 1, **keys.header("service")) == [200]
    assert statuses(neighbour, "/healthz", 2) == [200, 200]
    clock.advance(seconds=1)
    assert statuses(client, "/healthz", 2) == [200, 200]


def test_a_refused_key_spends_its_address_s_tokens(server: Server) -> None:
    client = server(rate_limit_address="1/minute")

    first = client.get("/v1/accounts", headers={"Authorization": "Bearer cm_not_a_key"})
    second = client.get("/v1/accounts", headers={"Authorization": "Bearer cm_not_a_key"})

    assert first.status_code == 401
    assert second.status_code == 429
    assert second.headers["retry-after"] == "60"


def test_limits_switched_off_limit_nothing(server: Server, keys: Keys) -> None:
    client = server(rate_limits=False, rate_limit_account_key="1/hour")

    assert set(statuses(client, "/healthz", 30)) == {200}
    assert set(statuses(client, "/v1/accounts/acme", 30, **keys.header("account"))) == {200}


@pytest.mark.parametrize("value", ["lots", "10", "0/second", "5/fortnight", "-1/minute"])
def test_a_limit_that_is_not_a_rate_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="a rate limit is N/second"):
        ServerSettings(rate_limit_account_key=value)


@pytest.mark.parametrize("value", ["off", "OFF", ""])
def test_off_is_no_limit(value: str) -> None:
    limits = ServerSettings(rate_limit_address=value).limits()

    assert limits is not None
    assert limits.address is None
