"""The admin console without a browser: who may sign in, and how long a session lasts."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.core.settings import settings_to_json
from creditmeter.payments.dev import DevProvider
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


def csrf_of(client: TestClient, path: str) -> str:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert token is not None
    return token.group(1)


def test_a_void_and_a_refund_ask_for_a_confirmation_first(
    client: TestClient, keys: Keys, meter: CreditMeter
) -> None:
    meter.grant("acme", 700, reason="to void")
    meter.put_package("starter", credits=1_000, price=999, currency="usd")
    started = meter.checkout("acme", "starter", ui_mode="elements")
    assert isinstance(meter.payments, DevProvider)
    meter.payments.complete(meter.purchase(started.purchase_id))
    while meter.work():
        pass
    assert sign_in(client, keys.superadmin) == 303
    token = csrf_of(client, "/admin/accounts/acme")
    (granted,) = [g for g in meter.grants("acme") if g.source.value == "admin"]
    path = f"/admin/accounts/acme/grants/{granted.id}/void"
    asked = client.post(path, data={"csrf_token": token, "reason": "mistake"})
    assert "Void 700 credits" in asked.text
    assert meter.balance("acme").available == 1_700
    done = client.post(path, data={"csrf_token": token, "reason": "mistake", "confirm": "yes"})
    assert done.status_code == 200
    assert "Grant voided." in done.text
    assert meter.balance("acme").available == 1_000

    refund = f"/admin/purchases/{started.purchase_id}/refund"
    asked = client.post(refund, data={"csrf_token": token})
    assert "Refund $9.99" in asked.text
    assert meter.purchase(started.purchase_id).amount_refunded == 0
    client.post(refund, data={"csrf_token": token, "confirm": "yes"})
    while meter.work():
        pass
    assert meter.purchase(started.purchase_id).amount_refunded == 999
    assert meter.balance("acme").available == 0
    actions = [e.action.value for e in meter.audit_log(account="acme").data]
    assert {"grant.voided", "purchase.refunded"} <= set(actions)


def test_staff_export_an_accounts_ledger_and_the_audit_log(
    client: TestClient, keys: Keys, meter: CreditMeter
) -> None:
    meter.grant("acme", 250, reason="export me")
    assert client.get("/admin/audit.csv", follow_redirects=False).status_code == 303
    assert sign_in(client, keys.admin) == 303
    ledger = client.get("/admin/accounts/acme/transactions.csv")
    assert ledger.headers["content-disposition"] == 'attachment; filename="acme-transactions.csv"'
    assert len(ledger.text.splitlines()) == 2
    audit = client.get("/admin/audit.csv?account=acme")
    assert "grant.created" in audit.text
    assert ",globex," not in audit.text
    assert client.get("/admin/accounts/nobody/transactions.csv").status_code == 404


def test_the_settings_form_changes_every_setting_and_only_what_changed(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    assert sign_in(client, keys.superadmin) == 303
    form = client.get("/admin/settings").text
    fields = set(re.findall(r'<(?:input|select) id="[a-z_]+" name="([a-z_]+)"', form))
    assert fields == set(settings_to_json(meter.settings()))
    unchanged = {
        name: ""
        if value is None
        else ", ".join(map(str, value))
        if isinstance(value, list)
        else str(value)
        for name, value in settings_to_json(meter.settings()).items()
    }
    answer = client.post(
        "/admin/settings",
        data={
            **unchanged,
            "csrf_token": csrf_of(client, "/admin/settings"),
            "allowance_alerts": "50, 90",
            "enforcement": "observe",
            "grant_expiring_days": "3",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    settings = meter.settings()
    assert settings.allowance_alerts == (50, 90)
    assert settings.enforcement == "observe"
    assert settings.grant_expiring_days == 3
    assert meter.settings_history()[0]["changes"] == {
        "allowance_alerts": [50, 90],
        "enforcement": "observe",
        "grant_expiring_days": 3,
    }


def test_a_settings_value_of_the_wrong_kind_changes_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    assert sign_in(client, keys.superadmin) == 303
    before = meter.settings()
    for field, value in (
        ("allowance_alerts", "75, lots"),
        ("grant_expiring_days", "-1"),
        ("enforcement", "sometimes"),
    ):
        answer = client.post(
            "/admin/settings",
            data={"csrf_token": csrf_of(client, "/admin/settings"), field: value},
        )
        assert answer.status_code == 400, (field, answer.status_code)
    assert meter.settings() == before
