"""POST /v1/accounts/{id}/portal-sessions: one-time links to the customer portal."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings
from tests.api.conftest import Keys
from tests.conftest import Clock


def link(client: TestClient, keys: Keys, account: str = "acme", **body: str) -> dict[str, str]:
    answer = client.post(
        f"/v1/accounts/{account}/portal-sessions", headers=keys.header("service"), json=body
    )
    assert answer.status_code == 201, answer.text
    made: dict[str, str] = answer.json()
    return made


def path_of(made: dict[str, str]) -> str:
    return made["url"].removeprefix("http://testserver")


def test_a_link_opens_the_portal_once(client: TestClient, keys: Keys, meter: CreditMeter) -> None:
    made = link(client, keys, return_url="https://app.example/billing")
    assert made["account"] == "acme"
    assert made["return_url"] == "https://app.example/billing"
    opened = client.get(path_of(made), follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == "/portal"
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/portal" in cookie
    assert "Secure" not in cookie
    page = client.get("/portal")
    assert page.status_code == 200
    assert "Acme" in page.text
    assert 'href="https://app.example/billing"' in page.text
    again = client.get(path_of(made), follow_redirects=False)
    assert again.status_code == 403
    assert "expired or was already used" in again.text


def test_a_link_expires(client: TestClient, keys: Keys, clock: Clock) -> None:
    made = link(client, keys)
    clock.advance(minutes=5)
    assert client.get(path_of(made), follow_redirects=False).status_code == 403


def test_the_cookie_is_secure_over_https(meter: CreditMeter, keys: Keys) -> None:
    app = create_app(ServerSettings(worker=False, rate_limits=False), meter=meter)
    with TestClient(app, base_url="https://testserver") as secure:
        made = link(secure, keys)
        opened = secure.get(made["url"].removeprefix("https://testserver"), follow_redirects=False)
    assert "Secure" in opened.headers["set-cookie"]


def test_only_a_digest_is_stored_and_the_creation_is_audited(
    client: TestClient, keys: Keys, meter: CreditMeter
) -> None:
    made = link(client, keys)
    token = made["url"].rsplit("/", 1)[1]
    with meter.db.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT digest FROM portal_sessions")).scalar_one()
    assert token not in stored
    (entry,) = meter.audit_log(actions=("portal_session.created",)).data
    assert (entry.account_id, entry.subject_id) == ("acme", made["id"])
    assert entry.actor.key_id is not None


def test_refusals_change_nothing(client: TestClient, keys: Keys, meter: CreditMeter) -> None:
    missing = client.post("/v1/accounts/nobody/portal-sessions", headers=keys.header("service"))
    assert missing.status_code == 404
    bad = client.post(
        "/v1/accounts/acme/portal-sessions",
        headers=keys.header("service"),
        json={"return_url": "javascript:alert(1)"},
    )
    assert bad.status_code == 422
    own = client.post("/v1/accounts/acme/portal-sessions", headers=keys.header("account"))
    assert own.status_code == 403
    with meter.db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM portal_sessions")).scalar_one() == 0


def test_the_embedded_card_is_framed_only_by_configured_origins(
    meter: CreditMeter, keys: Keys
) -> None:
    settings = ServerSettings(worker=False, rate_limits=False, embed_origins="https://app.example")
    with TestClient(create_app(settings, meter=meter)) as embedding:
        made = link(embedding, keys)
        card = embedding.get(path_of(made) + "?embed=balance")
        assert card.status_code == 200
        policy = card.headers["content-security-policy"]
        assert "frame-ancestors https://app.example" in policy
        assert "x-frame-options" not in card.headers
    with TestClient(create_app(ServerSettings(worker=False), meter=meter)) as plain:
        page = plain.get("/portal/embed/balance")
        assert page.status_code == 401
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
