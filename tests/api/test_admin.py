"""Settings with their history, and API keys, over HTTP."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from tests.api.conftest import ADMIN_KEY, Keys
from tests.conftest import Clock

Json = dict[str, Any]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# Settings.


def test_settings_change_and_their_history_says_who_and_when(
    client: TestClient, meter: CreditMeter, keys: Keys, clock: Clock
) -> None:
    key, secret = meter.create_api_key("superadmin", name="ops")
    before = client.get("/v1/settings", headers=keys.header("admin"))

    changed = client.put(
        "/v1/settings",
        json={"welcome_bonus": 500, "default_multiplier": "1.2", "allowance_alerts": [50, 100]},
        headers=bearer(secret),
    )
    clock.advance(hours=1)
    again = client.put(
        "/v1/settings",
        json={"upgrade_url": "https://example.com/upgrade", "enforcement": "observe"},
        headers=bearer(ADMIN_KEY),
    )
    history = client.get("/v1/settings/history", headers=keys.header("admin"))

    assert before.status_code == 200
    assert before.json()["welcome_bonus"] == 0
    assert before.json()["credits_per_usd"] == "1000"
    assert changed.status_code == 200, changed.text
    assert changed.json()["welcome_bonus"] == 500
    assert changed.json()["default_multiplier"] == "1.2"
    assert changed.json()["allowance_alerts"] == [50, 100]
    assert again.json()["welcome_bonus"] == 500
    assert again.json()["enforcement"] == "observe"
    assert client.get("/v1/settings", headers=keys.header("superadmin")).json() == again.json()
    assert history.json()["next_cursor"] is None
    newest, oldest = history.json()["data"]
    assert oldest["version"] == 1
    assert oldest["changes"] == {
        "allowance_alerts": [50, 100],
        "default_multiplier": "1.2",
        "welcome_bonus": 500,
    }
    assert oldest["changed_by"] == f"{key.id} (ops)"
    assert oldest["changed_at"] == "2026-03-10T12:00:00Z"
    assert oldest["values"] == changed.json()
    assert newest["version"] == 2
    assert newest["changes"] == {
        "upgrade_url": "https://example.com/upgrade",
        "enforcement": "observe",
    }
    assert newest["changed_by"] == "admin_key (CREDITMETER_ADMIN_KEY)"
    assert newest["changed_at"] == "2026-03-10T13:00:00Z"
    assert newest["values"] == again.json()


def test_a_changed_setting_takes_effect(client: TestClient, meter: CreditMeter, keys: Keys) -> None:
    changed = client.put(
        "/v1/settings", json={"welcome_bonus": 250}, headers=keys.header("superadmin")
    )
    assert changed.status_code == 200
    meter.create_account("initech")
    assert meter.balance("initech").available == 250
    removed = client.put(
        "/v1/settings", json={"upgrade_url": None}, headers=keys.header("superadmin")
    )
    assert removed.json()["upgrade_url"] is None
    assert meter.verify() == []


BAD_SETTINGS: list[Json] = [
    {},
    {"colour": "red"},
    {"welcome_bonus": 1.5},
    {"welcome_bonus": -1},
    {"welcome_bonus": "100"},
    {"welcome_bonus": None},
    {"credits_per_usd": 1000.5},
    {"credits_per_usd": "lots"},
    {"enforcement": "strict"},
    {"allowance_alerts": [0]},
    {"allowance_alerts": [101]},
    {"allowance_alerts": "90"},
    {"default_hold_ttl_seconds": 0},
    {"upgrade_url": ""},
]


def test_bad_settings_are_422_and_change_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    for body in BAD_SETTINGS:
        response = client.put("/v1/settings", json=body, headers=keys.header("superadmin"))
        assert response.status_code == 422, body
        assert response.json()["error"]["type"] == "invalid_request"
    assert meter.settings_history() == []


def test_admins_read_settings_and_only_superadmins_change_them(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    for role in ("service", "account"):
        assert client.get("/v1/settings", headers=keys.header(role)).status_code == 403
        history = client.get("/v1/settings/history", headers=keys.header(role))
        assert history.status_code == 403
    for role in ("admin", "service", "account"):
        refused = client.put("/v1/settings", json={"welcome_bonus": 5}, headers=keys.header(role))
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "forbidden"
    assert client.get("/v1/settings").status_code == 401
    assert meter.settings_history() == []


# API keys.


def test_a_key_is_shown_once_works_for_its_role_and_is_revoked(
    client: TestClient, meter: CreditMeter, keys: Keys, clock: Clock
) -> None:
    created = client.post(
        "/v1/api-keys",
        json={"role": "service", "name": "backend"},
        headers=keys.header("superadmin"),
    )

    assert created.status_code == 201, created.text
    body = created.json()
    secret = body.pop("key")
    assert secret.startswith(body["prefix"])
    assert body | {"id": ""} == {
        "id": "",
        "role": "service",
        "account": None,
        "name": "backend",
        "prefix": body["prefix"],
        "created_at": "2026-03-10T12:00:00Z",
    }
    assert client.get("/v1/accounts/acme/balance", headers=bearer(secret)).status_code == 200
    assert client.get("/v1/settings", headers=bearer(secret)).status_code == 403

    listed = client.get("/v1/api-keys", headers=keys.header("superadmin"))
    assert secret not in listed.text
    [mine] = [k for k in listed.json()["data"] if k["id"] == body["id"]]
    assert mine == {**body, "revoked_at": None}
    assert "key" not in mine

    clock.advance(minutes=5)
    revoked = client.delete(f"/v1/api-keys/{body['id']}", headers=keys.header("superadmin"))
    assert revoked.status_code == 204
    assert revoked.content == b""
    refused = client.get("/v1/accounts/acme/balance", headers=bearer(secret))
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "unauthenticated"
    again = client.delete(f"/v1/api-keys/{body['id']}", headers=keys.header("superadmin"))
    assert again.status_code == 204
    listed_after = client.get("/v1/api-keys", headers=keys.header("superadmin")).json()["data"]
    [after] = [k for k in listed_after if k["id"] == body["id"]]
    assert after["revoked_at"] == "2026-03-10T12:05:00Z"
    assert meter.authenticate(secret) is None


def test_an_account_key_reads_only_its_own_account(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    created = client.post(
        "/v1/api-keys", json={"role": "account", "account": "globex"}, headers=bearer(ADMIN_KEY)
    )

    assert created.status_code == 201, created.text
    assert (created.json()["account"], created.json()["name"]) == ("globex", "account key")
    secret = bearer(created.json()["key"])
    assert client.get("/v1/accounts/globex/transactions", headers=secret).status_code == 200
    assert client.get("/v1/accounts/acme/transactions", headers=secret).status_code == 404
    assert client.get("/v1/features", headers=secret).status_code == 200
    assert client.get("/v1/api-keys", headers=secret).status_code == 403


BAD_KEYS: list[tuple[Json, int]] = [
    ({"role": "account"}, 422),
    ({"role": "service", "account": "acme"}, 422),
    ({"role": "owner"}, 422),
    ({"role": "service", "name": ""}, 422),
    ({"role": "service", "colour": "red"}, 422),
    ({"account": "acme"}, 422),
    ({"role": "account", "account": "nobody"}, 404),
]


def test_bad_keys_are_refused_and_none_is_made(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    before = meter.api_keys()
    for body, status in BAD_KEYS:
        response = client.post("/v1/api-keys", json=body, headers=keys.header("superadmin"))
        assert response.status_code == status, body
    for role in ("admin", "service", "account"):
        header = keys.header(role)
        made = client.post("/v1/api-keys", json={"role": "service"}, headers=header)
        assert made.status_code == 403
        assert client.get("/v1/api-keys", headers=header).status_code == 403
        assert client.delete(f"/v1/api-keys/{before[0].id}", headers=header).status_code == 403
    missing = client.delete("/v1/api-keys/key_nope", headers=keys.header("superadmin"))
    assert missing.status_code == 404
    assert meter.api_keys() == before
