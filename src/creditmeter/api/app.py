"""The FastAPI application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from creditmeter.api import docs, errors, observability
from creditmeter.api.body_limit import BodyLimits
from creditmeter.api.config import ServerSettings
from creditmeter.api.dashboards import install as install_dashboards
from creditmeter.api.dashboards.pages import Branding
from creditmeter.api.rate_limits import Limiter, RateLimits
from creditmeter.api.routers import (
    accounts,
    admin,
    audit,
    catalog,
    dev_checkout,
    health,
    ledger,
    metering,
    notifications,
    payments,
    portal_sessions,
    stats,
    webhook_endpoints,
    webhooks,
)
from creditmeter.api.security_headers import SecurityHeaders
from creditmeter.events.jobs import Worker
from creditmeter.events.sweeper import Sweeper
from creditmeter.meter import CreditMeter
from creditmeter.payments.dev import DevProvider

ROUTERS = (
    health.router,
    accounts.router,
    portal_sessions.router,
    metering.router,
    ledger.router,
    catalog.router,
    payments.router,
    webhooks.router,
    admin.router,
    stats.router,
    audit.router,
    webhook_endpoints.router,
    notifications.router,
)

DESCRIPTION = """\
Credits, allowances, holds and a double-entry ledger for AI usage.

Authenticate with an API key: `Authorization: Bearer <key>`. Every POST that changes
credits takes an `Idempotency-Key` header. Errors are
`{"error": {"type": "...", "message": "..."}}`; a refusal for lack of credits is 402 with
what is required and available.

Credits are sold as credit packs: a checkout starts a purchase at the payment provider,
and the provider's signed webhook (`POST /v1/webhooks/stripe`) credits the account once.
Money is always an integer of the currency's minor units (`{"amount": 999, "currency":
"usd"}` is $9.99).
"""


def create_app(
    settings: ServerSettings | None = None, *, meter: CreditMeter | None = None
) -> FastAPI:
    """The application on ``settings`` (from the environment by default); a ``meter``
    given is used as it is and not closed with the app."""
    settings = settings or ServerSettings()
    own_meter = meter is None
    meter = meter or CreditMeter(
        settings.database_url,
        pool_size=settings.pool_size,
        payments=settings.payment_provider(),
        timeouts=settings.timeouts(),
        webhook_timeout=settings.webhook_timeout,
        webhook_disable_after=settings.webhook_disable_after,
        webhook_allow_private=settings.webhook_allow_private,
        email=settings.email_settings(),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sweeper: Sweeper | None = None
        worker: Worker | None = None
        if settings.sweep_interval > 0:
            sweeper = Sweeper(meter, settings.sweep_interval)
            sweeper.start()
        if settings.worker:
            worker = Worker(meter, interval=settings.worker_interval)
            worker.start()
        yield
        if worker is not None:
            worker.stop()
        if sweeper is not None:
            sweeper.stop()
        if own_meter:
            meter.close()

    app = FastAPI(
        title="creditmeter",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.meter = meter
    admin_key = settings.admin_key
    app.state.admin_key = None if admin_key is None else admin_key.get_secret_value()
    metrics_token = settings.metrics_token
    app.state.metrics_token = None if metrics_token is None else metrics_token.get_secret_value()
    errors.install(app)
    app.add_middleware(
        BodyLimits, default=settings.max_body_bytes, batch=settings.max_batch_body_bytes
    )
    limits = settings.limits()
    if limits is not None:
        app.add_middleware(RateLimits, limiter=Limiter(limits, meter.clock))
    observability.install(app)
    app.add_middleware(SecurityHeaders)
    meter.charge_observers.append(observability.count_charge)
    meter.group_observers.append(observability.count_group)
    for router in ROUTERS:
        app.include_router(router)
    if isinstance(meter.payments, DevProvider):
        app.include_router(dev_checkout.router)
    public_url = settings.public_url.rstrip("/") if settings.public_url else None
    app.state.public_url = public_url
    install_dashboards(
        app,
        Branding(
            name=settings.brand_name,
            logo_url=settings.brand_logo_url,
            accent=settings.brand_accent,
            embed_origins=tuple(settings.embed_origins.split()),
            public_url=public_url,
        ),
    )
    docs.install(app)
    return app


def create_server_app() -> FastAPI:
    """The application as ``creditmeter serve`` runs it, one in each worker process:
    :func:`create_app`, then everything made so far (the modules, the routes, the meter
    and its compiled statements) moved out of the garbage collector's generations with
    :func:`gc.freeze`. Those objects live as long as the process; left in the oldest
    generation, they are walked again by every collection of it, which cost a batch of
    usage events a fifth of its CPU and a metered request a tenth in the benchmarks.
    ``create_app`` does not do it: tests and applications that embed the service call it
    in processes of their own."""
    app = create_app()
    gc.collect()
    gc.freeze()
    return app
