"""Every CSV export neutralises text a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from tests.api.conftest import Keys

ACCOUNT = "=1+2"
"""An account id is allowed to begin with ``=``: the audit log's account column."""


def rows(client: TestClient, path: str, keys: Keys) -> list[dict[str, str]]:
    response = client.get(path, params={"format": "csv"}, headers=keys.header("superadmin"))
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


def test_formula_like_text_is_written_as_text_and_credits_as_numbers(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    created = client.post("/v1/accounts", json={"id": ACCOUNT}, headers=keys.header("superadmin"))
    assert created.status_code == 200, created.text
    granted = client.post(
        f"/v1/accounts/{ACCOUNT}/grants",
        json={"amount": 1_000, "reason": "@SUM(A1:A9)"},
        headers=keys.header("superadmin"),
    )
    assert granted.status_code == 200, granted.text
    meter.charge(ACCOUNT, "chat", usage={"tokens": 7}, model="+cmd|' /C calc'!A0", member="-ann")
    meter.charge(ACCOUNT, "chat", usage={"tokens": 1}, model="\tm", member="\rbob")

    usage = rows(client, f"/v1/accounts/{ACCOUNT}/usage", keys)
    transactions = rows(client, f"/v1/accounts/{ACCOUNT}/transactions", keys)
    audit = rows(client, "/v1/audit-log", keys)

    assert [(u["model"], u["member"]) for u in usage] == [
        ("'\tm", "'\rbob"),
        ("'+cmd|' /C calc'!A0", "'-ann"),
    ]
    assert [u["credits"] for u in usage] == ["1", "7"]
    assert [t["amount"] for t in transactions] == ["-1", "-7", "1000"]
    assert transactions[-1]["description"] == "'@SUM(A1:A9)"
    assert [a["account"] for a in audit if a["action"] == "grant.created"] == [f"'{ACCOUNT}"]
