"""The development provider's checkout page: the whole purchase flow through the app, with
no keys and no network."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.api.routers.dev_checkout import format_price
from creditmeter.core.payments import Money, PurchaseStatus
from tests.api.conftest import Keys
from tests.api.test_payments import HOSTED, drain, ok, starter


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
    page_path = f"/dev/checkout/{purchase_id}"

    page = client.get(page_path)
    paid = client.post(f"{page_path}/pay", follow_redirects=False)
    waiting = client.get(paid.headers["location"])
    ran = drain(meter)
    done = client.get(paid.headers["location"])
    again = client.post(f"{page_path}/pay", follow_redirects=False)
    after = client.get(page_path)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Starter" in page.text
    assert "$9.99" in page.text
    assert "11,000 credits" in page.text
    assert f'action="/dev/checkout/{purchase_id}/pay"' in page.text
    assert f'href="/dev/checkout/{purchase_id}/cancelled">Cancel</a>' in page.text
    assert "<script" not in page.text  # self-contained: no script, no external asset
    assert "://" not in page.text
    assert paid.status_code == 303
    assert paid.headers["location"] == f"/dev/checkout/{purchase_id}/done"
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

    cancelled = client.get(f"/dev/checkout/{purchase_id}/cancelled")

    assert cancelled.status_code == 200
    assert "Nothing was charged" in cancelled.text
    assert f'href="/dev/checkout/{purchase_id}"' in cancelled.text
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

    page = client.get(f"/dev/checkout/{purchase_id}")
    paid = client.post(f"/dev/checkout/{purchase_id}/pay", follow_redirects=False)
    done = client.get(f"/dev/checkout/{purchase_id}/done")

    assert meter.purchase(purchase_id).status is PurchaseStatus.FAILED
    assert "failed" in page.text
    assert "nothing to pay" in page.text
    assert paid.status_code == 409
    assert "Purchase failed" in done.text


def test_the_page_escapes_what_it_shows(client: TestClient, meter: CreditMeter, keys: Keys) -> None:
    meter.put_package(
        "evil", name="<script>alert(1)</script>", credits=10, price=100, currency="usd"
    )
    purchase_id = meter.checkout("acme", "evil", ui_mode="elements").purchase_id

    page = client.get(f"/dev/checkout/{purchase_id}")

    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


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
