"""The admin console without a browser: who may sign in, and how long a session lasts."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from tests.api.conftest import ADMIN_KEY, Keys

PAGES = (
    "/admin",
    "/admin/accounts",
    "/admin/accounts/acme",
    "/admin/catalogue",
    "/admin/settings",
    "/admin/keys",
    "/admin/webhooks",
    "/admin/audit",
)


def sign_in(client: TestClient, key: str) -> int:
    form = client.get("/admin/sign-in").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token is not None
    answer = client.post(
        "/admin/sign-in",
        data={"csrf_token": token.group(1), "key": key},
        follow_redirects=False,
    )
    return answer.status_code


def test_pages_need_a_session(client: TestClient) -> None:
    for path in PAGES:
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/admin/sign-in"


def test_only_admin_and_superadmin_keys_sign_in(client: TestClient, keys: Keys) -> None:
    assert sign_in(client, keys.service) == 401
    assert sign_in(client, keys.account) == 401
    assert sign_in(client, "cm_not-a-key") == 401
    assert sign_in(client, keys.admin) == 303
    for path in PAGES:
        assert client.get(path).status_code == 200, path
    assert "Only superadmins see and manage API keys." in client.get("/admin/keys").text
    assert sign_in(client, ADMIN_KEY) == 303
    assert "Create key" in client.get("/admin/keys").text


def test_sign_in_needs_the_form_of_the_sign_in_page(client: TestClient, keys: Keys) -> None:
    answer = client.post("/admin/sign-in", data={"key": keys.superadmin}, follow_redirects=False)
    assert answer.status_code == 403
    assert "creditmeter_admin" not in answer.headers.get("set-cookie", "")


def test_a_revoked_key_signs_out_at_once(
    client: TestClient, keys: Keys, meter: CreditMeter
) -> None:
    assert sign_in(client, keys.admin) == 303
    assert client.get("/admin").status_code == 200
    (admin,) = [k for k in meter.api_keys() if k.role.value == "admin"]
    meter.revoke_api_key(admin.id)
    assert client.get("/admin", follow_redirects=False).status_code == 303
