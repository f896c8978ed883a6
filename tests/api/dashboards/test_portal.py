"""The customer portal without a browser: pages of transactions, filters, refusals."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from tests.api.conftest import Keys


def open_portal(client: TestClient, keys: Keys, account: str = "acme") -> None:
    made = client.post(
        f"/v1/accounts/{account}/portal-sessions", headers=keys.header("service")
    ).json()
    assert client.get(made["url"].removeprefix("http://testserver")).status_code == 200


def test_transactions_come_a_page_at_a_time(
    client: TestClient, keys: Keys, meter: CreditMeter
) -> None:
    meter.put_feature("chat", rates={"calls": 1})
    meter.grant("acme", 1_000, reason="to spend")
    for n in range(30):
        meter.charge("acme", "chat", usage={"calls": n + 1})
    open_portal(client, keys)
    first = client.get("/portal/transactions")
    assert first.status_code == 200
    assert first.text.count("<tr>") == 1 + 25
    older = re.search(r'href="(/portal/transactions\?[^"]*cursor=[^"]+)"', first.text)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count("<tr>") == 1 + 31 - 25
    assert "First page" in second.text
    grants = client.get("/portal/transactions?type=grant")
    assert grants.text.count("<tr>") == 1 + 1
    csv = client.get("/portal/transactions.csv?type=usage")
    assert csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.splitlines()) == 1 + 30


def test_bad_filters_are_refused_with_a_page(client: TestClient, keys: Keys) -> None:
    open_portal(client, keys)
    assert client.get("/portal/transactions?type=nonsense").status_code == 400
    assert client.get("/portal/transactions?since=yesterday").status_code == 400
    assert client.get("/portal?by=weather").status_code == 400


def test_without_a_session_there_is_no_portal(client: TestClient) -> None:
    for path in ("/portal", "/portal/transactions", "/portal/transactions.csv"):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert "Your portal session has ended" in answer.text
    assert client.post("/portal/checkout", data={"package": "x"}).status_code == 401
