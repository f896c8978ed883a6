"""The development provider's checkout page: the whole purchase flow through the app, with
no keys and no network, for whoever was shown the checkout only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.api.routers.dev_checkout import format_price
from creditmeter.core.payments import Money, PurchaseStatus
from creditmeter.payments.dev import DevProvider
from creditmeter.payments.signature import sign
from tests.api.conftest import Keys
from tests.api.test_payments import HOSTED, drain, ok, starter


def page_provider(meter: CreditMeter) -> DevProvider:
    assert isinstance(meter.payments, DevProvider)
    return meter.payments


def page(meter: CreditMeter, purchase_id: str, which: str = "") -> str:
    """A page of the purchase's, with the token its checkout gave."""
    token = page_provider(meter).page_token(purchase_id)
    return f"/dev/checkout/{purchase_id}{which}?token={token}"


def token_given(started: dict[str, str]) -> str:
    """The page's token in a checkout's answer: in the URL, or (embedded, elements) what
    follows ``_secret_`` in the client secret."""
    if started["url"] is not None:
        return started["url"].partition("?token=")[2]
    return started["client_secret"].partition("_secret_")[2]


@pytest.mark.parametrize("ui_mode", ["hosted", "embedded", "elements"])
def test_a_purchase_paid_on_the_page_is_credited_once_the_worker_applies_it(
    client: TestClient, meter: CreditMeter, keys: Keys, ui_mode: str
) -> None:
    starter(meter)
    body = {**HOSTED, "ui_mode": ui_mode}
    started = ok(
        client.post("/v1/accounts/acme/checkout", json=body, headers=keys.header("account"))
    )
    purchase_id = started["purchase_id"]
    token = token_given(started)
    page_path = f"/dev/checkout/{purchase_id}"

    shown = client.get(f"{page_path}?token={token}")
    paid = client.post(f"{page_path}/pay?token={token}", follow_redirects=False)
    waiting = client.get(paid.headers["location"])
    ran = drain(meter)
    done = client.get(paid.headers["location"])
    again = client.post(f"{page_path}/pay?token={token}", follow_redirects=False)
    after = client.get(f"{page_path}?token={token}")

    assert shown.status_code == 200
    assert shown.headers["content-type"].startswith("text/html")
    assert "Starter" in shown.text
    assert "$9.99" in shown.text
    assert "11,000 credits" in shown.text
    assert f'action="/dev/checkout/{purchase_id}/pay?token={token}"' in shown.text
    assert f'href="/dev/checkout/{purchase_id}/cancelled?token={token}">Cancel</a>' in shown.text
    assert "<script" not in shown.text  # self-contained: no script, no external asset
    assert "://" not in shown.text
    assert paid.status_code == 303
    assert paid.headers["location"] == f"/dev/checkout/{purchase_id}/done?token={token}"
    assert "pending" in waiting.text
    assert 'http-equiv="refresh"' in waiting.text
    assert ran >= 1
    assert "11,000 credits are on account" in done.text
    assert 'http-equiv="refresh"' not in done.text
    assert again.status_code == 409
    assert "Nothing to pay" in again.text
    assert "Nothing to pay" in after.text
    drain(meter)
    purchase = ok(
        client.get(f"/v1/accounts/acme/purchases/{purchase_id}", headers=keys.header("account"))
    )
    assert (purchase["status"], purchase["amount_paid"]) == ("fulfilled", 999)
    assert purchase["transaction_id"] is not None
    assert meter.balance("acme").available == 11_000
    assert [e["status"] for e in meter.payment_events()] == ["applied"]
    assert meter.verify() == []


def test_the_served_page_is_the_checkout_url(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    started = ok(
        client.post("/v1/accounts/acme/checkout", json=HOSTED, headers=keys.header("service"))
    )

    page = client.get(started["url"].removeprefix("http://127.0.0.1:8000"))

    assert page.status_code == 200
    assert "Pay $9.99" in page.text


@pytest.mark.parametrize("purchase_id", ["pur_nope", "a%20b", "%00", "x" * 300])
def test_an_unknown_purchase_is_404_on_every_page(client: TestClient, purchase_id: str) -> None:
    for method, path in [
        ("GET", f"/dev/checkout/{purchase_id}"),
        ("POST", f"/dev/checkout/{purchase_id}/pay"),
        ("GET", f"/dev/checkout/{purchase_id}/done"),
        ("GET", f"/dev/checkout/{purchase_id}/cancelled"),
    ]:
        response = client.request(method, path, follow_redirects=False)
        assert response.status_code == 404, (method, path, response.text)
        assert "Purchase not found" in response.text


def test_cancelling_charges_nothing_and_leads_back_to_the_page(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    purchase_id = meter.checkout("acme", "starter", ui_mode="elements").purchase_id

    cancelled = client.get(page(meter, purchase_id, "/cancelled"))

    assert cancelled.status_code == 200
    assert "Nothing was charged" in cancelled.text
    assert f'href="{page(meter, purchase_id)}"' in cancelled.text
    assert meter.payment_events() == []
    assert meter.purchase(purchase_id).status is PurchaseStatus.PENDING


def test_a_purchase_that_failed_says_so_and_cannot_be_paid(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    purchase_id = meter.checkout("acme", "starter", ui_mode="elements").purchase_id
    meter.payments.refund(
        meter.purchase(purchase_id), 999, idempotency_key="r"
    )  # refunded before it was paid
    drain(meter)

    shown = client.get(page(meter, purchase_id))
    paid = client.post(page(meter, purchase_id, "/pay"), follow_redirects=False)
    done = client.get(page(meter, purchase_id, "/done"))

    assert meter.purchase(purchase_id).status is PurchaseStatus.FAILED
    assert "failed" in shown.text
    assert "nothing to pay" in shown.text
    assert paid.status_code == 409
    assert "Purchase failed" in done.text


def test_the_page_escapes_what_it_shows(client: TestClient, meter: CreditMeter, keys: Keys) -> None:
    meter.put_package(
        "evil", name="<script>alert(1)</script>", credits=10, price=100, currency="usd"
    )
    purchase_id = meter.checkout("acme", "evil", ui_mode="elements").purchase_id

    shown = client.get(page(meter, purchase_id))

    assert "<script>" not in shown.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.text


def test_the_pages_are_not_in_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert not [p for p in paths if p.startswith("/dev")]


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (999, "usd", "$9.99"),
        (5, "usd", "$0.05"),
        (123_456_789, "eur", "€1,234,567.89"),
        (1_050, "gbp", "£10.50"),
        (1_200, "jpy", "¥1,200"),
        (999, "chf", "9.99 CHF"),
    ],
)
def test_prices_are_shown_from_minor_units(amount: int, currency: str, shown: str) -> None:
    assert format_price(Money(amount, currency)) == shown


PAGES = [("GET", ""), ("POST", "/pay"), ("GET", "/done"), ("GET", "/cancelled")]


def test_the_pages_need_the_token_their_checkout_gave(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    mine = meter.checkout("acme", "starter", success_url="https://example.com/done")
    other = meter.checkout("globex", "starter", success_url="https://example.com/done")
    others_token = (other.url or "").partition("?token=")[2]

    for token in ("", "?token=", "?token=" + "0" * 32, f"?token={others_token}"):
        for method, which in [
            ("GET", ""),
            ("POST", "/pay"),
            ("GET", "/done"),
            ("GET", "/cancelled"),
        ]:
            path = f"/dev/checkout/{mine.purchase_id}{which}{token}"
            response = client.request(method, path, follow_redirects=False)
            assert response.status_code == 404, (method, path, response.text)
            assert "Purchase not found" in response.text
    drain(meter)

    assert meter.payment_events() == []
    assert meter.purchase(mine.purchase_id).status is PurchaseStatus.PENDING
    assert others_token
    assert mine.url is not None
    assert client.get(mine.url.removeprefix("http://127.0.0.1:8000")).status_code == 200


def test_the_webhook_secret_is_random_to_each_database(
    client: TestClient, meter: CreditMeter, migrated_url: str, tmp_path: Path
) -> None:
    payload = json.dumps(
        {"id": "evt_forged", "object": "event", "type": "ping", "data": {"object": {}}}
    ).encode()

    forged = client.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": sign(payload, "whsec_dev")},
    )
    secret = page_provider(meter).webhook_secret
    with CreditMeter(migrated_url) as same, CreditMeter(f"sqlite:///{tmp_path / 'x.db'}") as other:
        assert page_provider(same).webhook_secret == secret  # every process on the database
        assert page_provider(other).webhook_secret != secret
    right = {"Stripe-Signature": sign(payload, secret)}
    signed = client.post("/v1/webhooks/stripe", content=payload, headers=right)

    assert forged.status_code == 400
    assert forged.json()["error"]["type"] == "invalid_signature"
    assert signed.status_code == 200, signed.text
    assert [e["id"] for e in meter.payment_events()] == ["evt_forged"]
    assert len(secret) > 40
