from __future__ import annotations

from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from tests.api.conftest import ADMIN_KEY, Keys


def test_create_account_returns_it_and_again_returns_the_same(
    client: TestClient, keys: Keys, meter: CreditMeter
) -> None:
    meter.put_plan("pro", allowances={"*": 20_000})
    body = {"id": "initech", "name": "Initech", "plan": "pro"}
    first = client.post("/v1/accounts", json=body, headers=keys.header("service"))
    again = client.post("/v1/accounts", json=body, headers=keys.header("service"))
    assert first.status_code == 200
    assert first.json() == again.json()
    assert first.json()["plan"] == "pro"
    balance = client.get("/v1/accounts/initech/balance", headers=keys.header("service"))
    assert balance.json()["available"] == 20_000
    assert balance.json()["allowance"]["limit"] == 20_000


def test_an_account_key_sees_its_own_account_and_gets_404_for_another(
    client: TestClient, keys: Keys
) -> None:
    own = client.get("/v1/accounts/acme", headers=keys.header("account"))
    other = client.get("/v1/accounts/globex", headers=keys.header("account"))
    assert own.status_code == 200
    assert other.status_code == 404
    assert other.json()["error"]["type"] == "not_found"


def test_without_a_key_401_and_with_the_admin_key_superadmin(client: TestClient) -> None:
    assert client.get("/v1/accounts").status_code == 401
    listed = client.get("/v1/accounts", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert listed.status_code == 200
    assert listed.json() == {"data": [], "next_cursor": None}


def test_unknown_field_and_float_amount_are_refused_with_422(
    client: TestClient, keys: Keys
) -> None:
    unknown = client.post(
        "/v1/accounts", json={"id": "x", "colour": "red"}, headers=keys.header("service")
    )
    floaty = client.post(
        "/v1/accounts", json={"id": "x", "overdraft_limit": 1.5}, headers=keys.header("service")
    )
    assert unknown.status_code == 422
    assert floaty.status_code == 422
    assert unknown.json()["error"]["type"] == "invalid_request"
    missing = client.get("/v1/accounts/x", headers=keys.header("service"))
    assert missing.status_code == 404


def test_an_id_the_database_cannot_hold_is_refused_not_an_error(
    client: TestClient, keys: Keys
) -> None:
    # PostgreSQL text cannot hold a NUL character: such an id names nothing that exists,
    # and is answered 404 (SQLite looks for it) or 422 (PostgreSQL refuses it), never 500.
    for path in (
        "/v1/accounts/a%00b",
        "/v1/accounts/a%00b/balance",
        "/v1/accounts/a%00b/transactions",
        "/v1/accounts/a%00b/usage",
        "/v1/holds/hold_a%00b",
    ):
        response = client.get(path, headers=keys.header("service"))
        assert response.status_code in (404, 422), (path, response.text)
        assert response.json()["error"]["type"] in ("not_found", "invalid_request"), path
