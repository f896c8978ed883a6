"""Server configuration, from ``CREDITMETER_*`` environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditmeter.api.body_limit import DEFAULT_MAX_BATCH_BODY_BYTES, DEFAULT_MAX_BODY_BYTES
from creditmeter.api.rate_limits import Limits, parse
from creditmeter.core.webhooks import DISABLE_AFTER
from creditmeter.payments.dev import DevProvider
from creditmeter.payments.off import PaymentsOff
from creditmeter.payments.provider import PaymentProvider
from creditmeter.service.mail import EmailSettings, Smtp
from creditmeter.store.database import DEFAULT_URL, Timeouts

ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}
"""Addresses a server listens on but a browser cannot open: the loopback address instead."""
SECRET_MINIMUM = 32
"""Characters a secret given in the environment (the admin key, the metrics token) needs
at least: ``openssl rand -base64 32`` makes 44."""


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITMETER_", extra="ignore")

    database_url: str = DEFAULT_URL
    """SQLAlchemy URL of the database; a SQLite file in the working directory by default."""
    admin_key: SecretStr | None = None
    """Accepted as a superadmin key as given, so a fresh server can be driven at once; at
    least 32 characters."""
    metrics_token: SecretStr | None = None
    """If set, ``/metrics`` answers only requests with ``Authorization: Bearer <token>``;
    at least 32 characters."""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    log_level: str = "info"
    pool_size: int = 10
    sweep_interval: float = 30.0
    """Seconds between sweeps of idle accounts (expired holds, period ends); 0: none."""
    payments: Literal["off", "dev", "stripe"] = "off"
    """Where credits are sold: nowhere (checkouts and webhooks answer 503
    ``payments_not_configured``), Stripe, or the development provider (no keys, no
    network, no money: anyone shown a checkout can pay it; never in production)."""
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    """The signing secret of the Stripe webhook endpoint (``whsec_…``)."""
    stripe_api_base: str | None = None
    """Another address for Stripe's API (a local stand-in, in tests)."""
    public_url: str | None = None
    """The server's public base URL, for links to its own pages (the development checkout
    page); by default ``http://<host>:<port>``."""
    worker: bool = True
    """Run the outbox's jobs (applying payment events, auto-recharges) in a thread of the
    server process."""
    webhook_timeout: float = 10.0
    """Seconds a webhook receiver has to answer before the delivery counts as failed."""
    webhook_disable_after: int = Field(default=DISABLE_AFTER, gt=0)
    """Failed deliveries in a row after which a webhook endpoint is disabled."""
    webhook_allow_private: bool = False
    """Let webhooks go to private, loopback, link-local, multicast, reserved and
    unspecified addresses (receivers on this machine or its network, in development)."""
    smtp_host: str | None = None
    """The SMTP server that sends notification emails; none: no email is sent."""
    smtp_port: int = Field(default=587, gt=0, lt=65536)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    """``starttls`` (port 587), ``tls`` from the start (port 465), or ``none`` (a relay
    on this machine or network)."""
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_ca_file: str | None = None
    """A CA bundle for the SMTP server's certificate (a private CA)."""
    smtp_timeout: float = Field(default=30.0, gt=0)
    email_from: str | None = None
    """The ``From`` of notification emails; needed with ``smtp_host``."""
    operator_email: str | None = None
    """Where operator events (a webhook endpoint disabled) are emailed."""
    email_templates: Path | None = None
    """A directory of templates that replace the packaged ones, name for name."""
    preferences_url: str | None = None
    """The page where an account changes its notification preferences, linked from every
    email; ``{account_id}`` is replaced. By default the API's
    ``/v1/accounts/{account_id}/notification-preferences``."""
    worker_interval: float = 1.0
    """Seconds between the worker's looks for due jobs when nothing wakes it earlier."""
    rate_limits: bool = True
    """Whether the rate limits below apply at all."""
    rate_limit_account_key: str = "20/second"
    """Requests an account key may make (``N/second``, ``N/minute``, ``N/hour``, in bursts
    of up to N; ``off``: no limit)."""
    rate_limit_staff_key: str = "off"
    """Requests a service, admin or superadmin key may make."""
    rate_limit_address: str = "50/second"
    """Requests a client address may make without a valid key (webhooks, health checks,
    the checkout and documentation pages, refused keys)."""

    brand_name: str = Field(default="creditmeter", min_length=1, max_length=80)
    """The product name the customer portal and the admin console show."""
    brand_logo_url: str | None = None
    """A logo for the dashboards' header: a path on this server or an https URL."""
    brand_accent: str = Field(default="#4f46e5", pattern=r"^#[0-9a-fA-F]{6}$")
    """The dashboards' accent colour, ``#rrggbb``."""
    embed_origins: str = ""
    """Space-separated origins (``https://app.example``) that may frame the embeddable
    balance card, ``/portal/embed/balance``; none by default."""

    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    """Bytes a request body may have; a larger one is 413, unread."""
    max_batch_body_bytes: int = Field(default=DEFAULT_MAX_BATCH_BODY_BYTES, gt=0)
    """Bytes the body of a batch of usage events (``POST /v1/usage/batch``) may have."""

    # How long a lock is waited for or kept by a process that stopped (Timeouts).
    lock_timeout: float = Field(default=Timeouts.lock, gt=0)
    """Seconds a request waits for a lock (an account's; SQLite's write lock), then 503."""
    idle_in_transaction_timeout: float = Field(default=Timeouts.idle_in_transaction, ge=0)
    """Seconds PostgreSQL lets a session sit idle in a transaction before it ends it."""
    statement_timeout: float = Field(default=Timeouts.statement, ge=0)
    """Seconds PostgreSQL lets a statement run before it cancels it."""
    tcp_keepalive: int = Field(default=Timeouts.keepalive, ge=0)
    """Seconds a PostgreSQL connection may be silent before TCP probes the other end."""

    def timeouts(self) -> Timeouts:
        return Timeouts(
            lock=self.lock_timeout,
            idle_in_transaction=self.idle_in_transaction_timeout,
            statement=self.statement_timeout,
            keepalive=self.tcp_keepalive,
        )

    @model_validator(mode="after")
    def _stripe_is_complete(self) -> ServerSettings:
        if self.payments == "stripe":
            missing = [
                f"CREDITMETER_{name.upper()}"
                for name in ("stripe_secret_key", "stripe_webhook_secret")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"payments=stripe needs {' and '.join(missing)}")
        if self.worker_interval <= 0:
            raise ValueError("worker_interval must be positive")
        if self.smtp_host and not self.email_from:
            raise ValueError("CREDITMETER_SMTP_HOST needs CREDITMETER_EMAIL_FROM")
        if self.email_templates is not None and not self.email_templates.is_dir():
            raise ValueError(f"CREDITMETER_EMAIL_TEMPLATES {self.email_templates} is no directory")
        return self

    @field_validator("admin_key", "metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < SECRET_MINIMUM:
            raise PydanticCustomError(
                "secret_too_short",
                "must be at least {minimum} characters (openssl rand -base64 32 makes one)",
                {"minimum": SECRET_MINIMUM},
            )
        return value

    @field_validator("embed_origins")
    @classmethod
    def _are_origins(cls, value: str) -> str:
        for origin in value.split():
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise PydanticCustomError(
                    "not_an_origin",
                    "{origin} is not an origin: scheme and host, like https://app.example",
                    {"origin": origin},
                )
        return value

    @field_validator("brand_logo_url")
    @classmethod
    def _is_a_logo_address(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(/|https?://)[^\s\"'<>;]*", value):
            raise PydanticCustomError(
                "not_a_logo_address", "must be a path on this server or an http(s) URL", {}
            )
        return value

    @field_validator("rate_limit_account_key", "rate_limit_staff_key", "rate_limit_address")
    @classmethod
    def _is_a_rate(cls, value: str) -> str:
        parse(value)
        return value

    def limits(self) -> Limits | None:
        """The rate limits; ``None`` when they are off."""
        if not self.rate_limits:
            return None
        return Limits(
            account_key=parse(self.rate_limit_account_key),
            staff_key=parse(self.rate_limit_staff_key),
            address=parse(self.rate_limit_address),
        )

    def base_url(self) -> str:
        """Where the server's own pages are reached."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = ANY_ADDRESS.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def email_settings(self) -> EmailSettings | None:
        """How events are emailed; ``None`` without an SMTP host."""
        if not self.smtp_host or not self.email_from:
            return None
        password = self.smtp_password.get_secret_value() if self.smtp_password else None
        smtp = Smtp(
            self.smtp_host,
            self.smtp_port,
            security=self.smtp_security,
            user=self.smtp_user,
            password=password,
            timeout=self.smtp_timeout,
            ca_file=self.smtp_ca_file,
        )
        link = self.preferences_url or (
            f"{self.base_url()}/v1/accounts/{{account_id}}/notification-preferences"
        )
        return EmailSettings(
            smtp,
            sender=self.email_from,
            operator=self.operator_email,
            templates=self.email_templates,
            preferences_url=link,
        )

    def payment_provider(self) -> PaymentProvider:
        """The configured payment provider."""
        if self.payments == "off":
            return PaymentsOff()
        if self.payments == "dev":
            return DevProvider(self.base_url())
        from creditmeter.payments.stripe import StripeProvider  # the SDK only when used

        assert self.stripe_secret_key is not None
        assert self.stripe_webhook_secret is not None
        return StripeProvider(
            self.stripe_secret_key.get_secret_value(),
            self.stripe_webhook_secret.get_secret_value(),
            api_base=self.stripe_api_base,
        )
