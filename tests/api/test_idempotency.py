"""Idempotency keys over HTTP belong to whoever sent them: an account's own keys are apart
from the operator's (the service, staff and the library), and a retry by the same sender
returns its first answer."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from tests.api.conftest import Keys

Json = dict[str, Any]
CHECKOUT: Json = {"package": "starter", "ui_mode": "elements"}
USAGE: Json = {"account": "acme", "feature": "chat", "usage": {"tokens": 5}}


def sent(client: TestClient, keys: Keys, role: str, path: str, body: Json, key: str) -> Json:
    response = client.post(path, json=body, headers={**keys.header(role), "Idempotency-Key": key})
    assert response.status_code == 200, response.text
    answer: Json = response.json()
    return answer


def test_an_accounts_key_does_not_take_the_operators_and_each_retry_gets_its_first_answer(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.grant("acme", 100)
    meter.put_package("starter", credits=1_000, price=999, currency="usd")
    checkout = "/v1/accounts/acme/checkout"

    bought = sent(client, keys, "account", checkout, CHECKOUT, "K")
    charged = sent(client, keys, "service", "/v1/usage", USAGE, "K")

    assert sent(client, keys, "account", checkout, CHECKOUT, "K") == bought
    assert sent(client, keys, "service", "/v1/usage", USAGE, "K") == charged
    assert meter.balance("acme").available == 95
    assert len(meter.purchases("acme").data) == 1


def test_the_operators_key_does_not_answer_an_accounts_request(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    meter.put_package("starter", credits=1_000, price=999, currency="usd")
    checkout = "/v1/accounts/acme/checkout"

    for_service = sent(client, keys, "service", checkout, CHECKOUT, "K")
    for_account = sent(client, keys, "account", checkout, CHECKOUT, "K")

    assert for_account["purchase_id"] != for_service["purchase_id"]
    assert sent(client, keys, "service", checkout, CHECKOUT, "K") == for_service
    assert sent(client, keys, "account", checkout, CHECKOUT, "K") == for_account
