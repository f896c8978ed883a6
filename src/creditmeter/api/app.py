"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from creditmeter.api import errors, observability
from creditmeter.api.config import ServerSettings
from creditmeter.api.routers import accounts, admin, catalog, health, ledger, metering
from creditmeter.events.sweeper import Sweeper
from creditmeter.meter import CreditMeter

ROUTERS = (
    health.router,
    accounts.router,
    metering.router,
    ledger.router,
    catalog.router,
    admin.router,
)

DESCRIPTION = """\
Credits, allowances, holds and a double-entry ledger for AI usage.

Authenticate with an API key: `Authorization: Bearer <key>`. Every POST that changes
credits takes an `Idempotency-Key` header. Errors are
`{"error": {"type": "...", "message": "..."}}`; a refusal for lack of credits is 402 with
what is required and available.
"""


def create_app(
    settings: ServerSettings | None = None, *, meter: CreditMeter | None = None
) -> FastAPI:
    """The application on ``settings`` (from the environment by default); a ``meter``
    given is used as it is and not closed with the app."""
    settings = settings or ServerSettings()
    own_meter = meter is None
    meter = meter or CreditMeter(settings.database_url, pool_size=settings.pool_size)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sweeper = None
        if settings.sweep_interval > 0:
            sweeper = Sweeper(meter, settings.sweep_interval)
            sweeper.start()
        yield
        if sweeper is not None:
            sweeper.stop()
        if own_meter:
            meter.close()

    app = FastAPI(title="creditmeter", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.meter = meter
    admin_key = settings.admin_key
    app.state.admin_key = None if admin_key is None else admin_key.get_secret_value()
    errors.install(app)
    observability.install(app)
    meter.charge_observers.append(observability.count_charge)
    for router in ROUTERS:
        app.include_router(router)
    return app
