"""The server's configuration: the payment provider it sells through, the links to its own
pages, and the worker that runs in its process."""

from __future__ import annotations

import gc
import time

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from creditmeter import CreditMeter
from creditmeter.api.app import create_app, create_server_app
from creditmeter.api.config import ServerSettings
from creditmeter.payments.dev import DevProvider
from creditmeter.payments.off import PaymentsOff
from creditmeter.payments.signature import sign
from creditmeter.payments.stripe import StripeProvider
from creditmeter.store.database import Timeouts
from tests.api.conftest import ADMIN_KEY, Keys
from tests.api.test_payments import HOSTED, ok, refused, starter

WEBHOOK_SECRET = "whsec_test_server"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``CREDITMETER_*`` variable of the machine's: each test sets what it reads."""
    for name in ServerSettings.model_fields:
        monkeypatch.delenv(f"CREDITMETER_{name.upper()}", raising=False)


def stripe_settings(database_url: str) -> ServerSettings:
    return ServerSettings(
        database_url=database_url,
        payments="stripe",
        stripe_secret_key=SecretStr("sk_test_creditmeter"),
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
        stripe_api_base="http://127.0.0.1:9",
        worker=False,
        sweep_interval=0,
    )


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, "CREDITMETER_STRIPE_SECRET_KEY and CREDITMETER_STRIPE_WEBHOOK_SECRET"),
        ({"stripe_secret_key": "sk_test_1"}, "CREDITMETER_STRIPE_WEBHOOK_SECRET"),
        ({"stripe_webhook_secret": "whsec_1"}, "CREDITMETER_STRIPE_SECRET_KEY"),
    ],
)
def test_stripe_without_its_keys_is_refused_at_startup(given: dict[str, str], missing: str) -> None:
    with pytest.raises(ValidationError, match=f"payments=stripe needs {missing}"):
        ServerSettings(payments="stripe", **given)  # type: ignore[arg-type]


def test_the_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITMETER_PAYMENTS", "stripe")
    monkeypatch.setenv("CREDITMETER_STRIPE_SECRET_KEY", "sk_test_env")
    monkeypatch.setenv("CREDITMETER_STRIPE_WEBHOOK_SECRET", "whsec_env")
    monkeypatch.setenv("CREDITMETER_WORKER", "false")
    monkeypatch.setenv("CREDITMETER_WORKER_INTERVAL", "0.25")

    settings = ServerSettings()

    assert settings.payments == "stripe"
    assert settings.stripe_webhook_secret == SecretStr("whsec_env")
    assert (settings.worker, settings.worker_interval) == (False, 0.25)
    assert isinstance(settings.payment_provider(), StripeProvider)


def test_the_defaults_are_payments_off_and_a_worker() -> None:
    settings = ServerSettings()

    assert (settings.payments, settings.worker, settings.worker_interval) == ("off", True, 1.0)
    assert isinstance(settings.payment_provider(), PaymentsOff)
    provider = ServerSettings(payments="dev").payment_provider()
    assert isinstance(provider, DevProvider)
    assert provider.base_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("given", "base_url"),
    [
        ({"host": "0.0.0.0", "port": 9000}, "http://127.0.0.1:9000"),
        ({"host": "::", "port": 9000}, "http://[::1]:9000"),
        ({"host": "::1"}, "http://[::1]:8000"),
        ({"host": "credits.internal"}, "http://credits.internal:8000"),
        ({"public_url": "https://credits.example.com/"}, "https://credits.example.com"),
    ],
)
def test_the_public_url_is_given_or_derived_from_the_address(
    given: dict[str, object], base_url: str
) -> None:
    settings = ServerSettings(**given)  # type: ignore[arg-type]

    assert settings.base_url() == base_url


def test_a_worker_interval_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="worker_interval must be positive"):
        ServerSettings(worker_interval=0)


def test_checkout_links_point_at_the_public_url(database_url: str) -> None:
    settings = ServerSettings(
        database_url=database_url,
        admin_key=SecretStr(ADMIN_KEY),
        public_url="https://credits.example.com",
        payments="dev",
        worker=False,
        sweep_interval=0,
    )
    app = create_app(settings)
    meter: CreditMeter = app.state.meter
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(app) as client:
        ok(client.post("/v1/accounts", json={"id": "acme"}, headers=headers))
        starter(meter)
        started = ok(client.post("/v1/accounts/acme/checkout", json=HOSTED, headers=headers))

    url = f"https://credits.example.com/dev/checkout/{started['purchase_id']}?token="
    assert started["url"].startswith(url)


def test_with_stripe_the_webhook_verifies_with_its_secret_and_no_dev_page_is_served(
    database_url: str,
) -> None:
    app = create_app(stripe_settings(database_url))
    meter: CreditMeter = app.state.meter
    payload = (
        b'{"id": "evt_1", "object": "event", "type": "customer.created", "data": {"object": {}}}'
    )
    with TestClient(app) as client:
        received = client.post(
            "/v1/webhooks/stripe",
            content=payload,
            headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET)},
        )
        dev_signed = client.post(
            "/v1/webhooks/stripe",
            content=payload,
            headers={"Stripe-Signature": sign(payload, "whsec_dev")},
        )
        page = client.get("/dev/checkout/pur_1")
        stored = meter.payment_events()
        paths = client.get("/openapi.json").json()["paths"]

    assert isinstance(meter.payments, StripeProvider)
    assert ok(received) == {"received": True, "duplicate": False}
    refused(dev_signed, 400, "invalid_signature")
    refused(page, 404, "not_found")
    assert [(e["id"], e["provider"]) for e in stored] == [("evt_1", "stripe")]
    assert "/v1/webhooks/stripe" in paths


def test_the_worker_in_the_server_applies_payments_without_being_asked(
    meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    settings = ServerSettings(
        admin_key=SecretStr(ADMIN_KEY), worker=True, worker_interval=0.05, sweep_interval=0
    )
    app = create_app(settings, meter=meter)
    with TestClient(app) as client:
        started = ok(
            client.post("/v1/accounts/acme/checkout", json=HOSTED, headers=keys.header("account"))
        )
        path = f"/v1/accounts/acme/purchases/{started['purchase_id']}"
        page = started["url"].removeprefix("http://127.0.0.1:8000")
        paid = client.post(page.replace("?", "/pay?"), follow_redirects=False)
        assert paid.status_code == 303
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            purchase = ok(client.get(path, headers=keys.header("account")))
            if purchase["status"] == "fulfilled":
                break
            time.sleep(0.05)
        listening = list(meter.job_listeners)

    assert purchase["status"] == "fulfilled"
    assert meter.balance("acme").available == 11_000
    assert len(listening) == 1
    assert meter.job_listeners == []  # stopped with the app


def test_the_server_app_freezes_what_lives_as_long_as_its_process(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``creditmeter serve``'s factory: the app made, then everything made so far kept
    out of the collector's generations; the app itself among it."""
    monkeypatch.setenv("CREDITMETER_DATABASE_URL", database_url)
    monkeypatch.setenv("CREDITMETER_WORKER", "false")
    monkeypatch.setenv("CREDITMETER_SWEEP_INTERVAL", "0")
    assert gc.get_freeze_count() == 0
    app = create_server_app()
    try:
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(app)
        assert all(o is not app for o in gc.get_objects())  # in no generation: frozen
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
    finally:
        gc.unfreeze()
        app.state.meter.close()


def test_the_timeouts_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, migrated_url: str
) -> None:
    assert ServerSettings().timeouts() == Timeouts()
    monkeypatch.setenv("CREDITMETER_LOCK_TIMEOUT", "2.5")
    monkeypatch.setenv("CREDITMETER_IDLE_IN_TRANSACTION_TIMEOUT", "12")
    monkeypatch.setenv("CREDITMETER_STATEMENT_TIMEOUT", "0")
    monkeypatch.setenv("CREDITMETER_TCP_KEEPALIVE", "20")
    settings = ServerSettings(database_url=migrated_url, worker=False, sweep_interval=0)
    expected = Timeouts(lock=2.5, idle_in_transaction=12, statement=0, keepalive=20)
    assert settings.timeouts() == expected
    with TestClient(create_app(settings)) as client:
        meter = client.app.state.meter  # type: ignore[attr-defined]
        assert isinstance(meter, CreditMeter)
        assert meter.db.timeouts == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lock_timeout", "0"),
        ("lock_timeout", "-1"),
        ("idle_in_transaction_timeout", "-1"),
        ("statement_timeout", "-1"),
        ("tcp_keepalive", "-1"),
        ("tcp_keepalive", "2.5"),
    ],
)
def test_a_timeout_that_bounds_nothing_is_refused_at_startup(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"CREDITMETER_{name.upper()}", value)
    with pytest.raises(ValidationError, match=name):
        ServerSettings()


def test_email_is_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServerSettings().email_settings() is None
    for name, value in {
        "SMTP_HOST": "smtp.example.com",
        "SMTP_PORT": "465",
        "SMTP_SECURITY": "tls",
        "SMTP_USER": "mailer",
        "SMTP_PASSWORD": "secret",
        "EMAIL_FROM": "billing@example.com",
        "OPERATOR_EMAIL": "ops@example.com",
        "PUBLIC_URL": "https://meter.example.com",
        "WEBHOOK_ALLOW_PRIVATE": "true",
    }.items():
        monkeypatch.setenv(f"CREDITMETER_{name}", value)
    settings = ServerSettings()
    email = settings.email_settings()
    assert email is not None
    assert (email.smtp.host, email.smtp.port, email.smtp.security) == (
        "smtp.example.com",
        465,
        "tls",
    )
    assert (email.smtp.user, email.smtp.password) == ("mailer", "secret")
    assert (email.sender, email.operator) == ("billing@example.com", "ops@example.com")
    assert email.preferences_url == (
        "https://meter.example.com/v1/accounts/{account_id}/notification-preferences"
    )
    assert settings.webhook_allow_private is True


def test_an_smtp_host_without_a_sender_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITMETER_SMTP_HOST", "smtp.example.com")
    with pytest.raises(ValidationError, match="CREDITMETER_EMAIL_FROM"):
        ServerSettings()
