"""An account's notification preferences over HTTP: service keys and above read and
replace them; a bad body is 422 and changes nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from tests.api.conftest import Keys

PATH = "/v1/accounts/acme/notification-preferences"


def test_preferences_are_the_defaults_until_replaced(client: TestClient, keys: Keys) -> None:
    service = keys.header("service")
    shown = client.get(PATH, headers=service)
    assert shown.status_code == 200, shown.text
    assert shown.json() == {
        "account_id": "acme",
        "emails": [],
        "channels": {"*": ["email", "webhook"]},
        "updated_at": None,
    }

    body = {"emails": ["ap@acme.example"], "channels": {"purchase.refunded": ["email"]}}
    put = client.put(PATH, json=body, headers=service)
    assert put.status_code == 200, put.text
    assert put.json()["channels"] == {"*": ["email", "webhook"], "purchase.refunded": ["email"]}
    assert client.get(PATH, headers=keys.header("admin")).json() == put.json()
    again = client.put(PATH, json=body, headers=service)
    assert again.json() == put.json(), "the same body again changes nothing"


def test_a_bad_body_is_422_and_changes_nothing(
    client: TestClient, keys: Keys, meter: CreditMeter
) -> None:
    service = keys.header("service")
    for bad in (
        {"emails": ["nope"]},
        {"channels": {"*": ["fax"]}},
        {"channels": {"no.such.event": ["email"]}},
        {"emails": "ap@acme.example"},
        {"unknown": 1},
    ):
        refused = client.put(PATH, json=bad, headers=service)
        assert refused.status_code == 422, (bad, refused.text)
    assert meter.notification_preferences("acme").updated_at is None
    assert client.get(PATH, headers=keys.header("account")).status_code == 403
    assert client.get(PATH.replace("acme", "nobody"), headers=service).status_code == 404
