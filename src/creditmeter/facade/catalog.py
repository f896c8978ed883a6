"""Features, plans, model prices and re-rating, and the settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from creditmeter.core.audit import LIBRARY, Actor
from creditmeter.core.models import ModelPrice, PriceBookVersion
from creditmeter.core.plans import Plan
from creditmeter.core.pricing import Feature
from creditmeter.core.rerating import RerateBooking, RerateReport
from creditmeter.core.settings import Settings
from creditmeter.facade.base import MeterBase
from creditmeter.service import catalog as catalog_service
from creditmeter.service import prices as prices_service
from creditmeter.service import (
    queries,
    rerating,
)
from creditmeter.service import settings as settings_service
from creditmeter.service.unit_of_work import keyed
from creditmeter.store import catalog
from creditmeter.store import prices as prices_store

T = TypeVar("T")


class CatalogVerbs(MeterBase):
    def put_feature(
        self,
        key: str,
        *,
        rates: Mapping[str, int | str | Decimal] | None = None,
        models: Mapping[str, Mapping[str, int | str | Decimal]] | None = None,
        multiplier: int | str | Decimal | None = None,
        pool: str | None = None,
        name: str | None = None,
        unknown_models: str = "refuse",
        cost_plus: bool = False,
        actor: Actor = LIBRARY,
    ) -> Feature:
        """Create or change a priced feature; a change is a new version of its rule.
        ``unknown_models``: a model that ``models`` cannot price is refused
        (``"refuse"``) or priced at ``rates`` (``"default_rates"``). ``cost_plus``: priced
        from the provider's cost at the price book's model prices instead of ``rates``;
        its ``multiplier`` defaults to the settings' default multiplier (else to 1)."""
        rule = {
            "rates": rates or {},
            "models": models or {},
            "multiplier": multiplier,
            "unknown_models": unknown_models,
            "cost_plus": cost_plus,
        }
        return self._write(
            lambda conn, now: catalog_service.put_feature(
                conn, now, key, name=name, pool=pool, rule=rule, actor=actor
            )
        )

    def features(self) -> list[Feature]:
        with self.db.read() as conn:
            return catalog.list_features(conn)

    def sync_prices(
        self, providers: Sequence[str] | None = None, *, actor: Actor = LIBRARY
    ) -> PriceBookVersion:
        """A new price-book version with the price catalogue's model prices of
        ``providers`` (default: every provider); the latest version if nothing changed."""
        chosen = None if providers is None else list(providers)
        return self._write(lambda conn, now: prices_service.sync(conn, now, chosen, actor))

    def price_book_versions(self) -> list[PriceBookVersion]:
        with self.db.read() as conn:
            return prices_store.versions(conn)

    def model_prices(
        self,
        *,
        version: int | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> tuple[PriceBookVersion | None, list[ModelPrice]]:
        """A price-book version (default: the latest; none before the first sync) and its
        model prices, of one provider or model if asked."""
        with self.db.read() as conn:
            return prices_service.model_prices(conn, version, provider, model)

    def rerate(
        self,
        *,
        since: datetime,
        until: datetime,
        to_version: int,
        account: str | None = None,
    ) -> RerateReport:
        """What the usage of cost-plus features from ``since`` until ``until`` (of every
        account, or of ``account``) would be rated at under price-book version
        ``to_version``, beside what it was rated at. A report: nothing is booked."""
        if account is not None:
            self.account(account)
        start, end = queries.instant(since, "since"), queries.instant(until, "until")
        with self.db.read() as conn:
            return rerating.report(conn, start, end, to_version, account)

    def apply_rerate(
        self,
        *,
        since: datetime,
        until: datetime,
        to_version: int,
        account: str | None = None,
        idempotency_key: str | None = None,
        actor: Actor = LIBRARY,
    ) -> RerateBooking:
        """Book what :meth:`rerate` reports: per account whose re-rated credits differ,
        one ``adjustment`` transaction of the difference (an under-charge taken from its
        grants in consumption order, debt for what they lack; an over-charge given back as
        a ``refund`` grant). All accounts in one database transaction; a window of an
        account is booked once (``AlreadyRerated`` for one that overlaps a window booked
        before), and a retry with the same ``idempotency_key`` returns the first
        booking."""
        if account is not None:
            self.account(account)
        start, end = queries.instant(since, "since"), queries.instant(until, "until")
        params = {"since": start, "until": end, "version": to_version, "account": account}
        key = keyed(idempotency_key, "apply_rerate", params, RerateBooking)
        return self._units.run(
            lambda uow: rerating.apply(uow, start, end, to_version, account, key, actor)
        )

    def put_plan(
        self,
        key: str,
        *,
        allowances: Mapping[str, int | None],
        features: list[str] | str = "*",
        period: str = "calendar_month",
        rollover_cap: int = 0,
        name: str | None = None,
        actor: Actor = LIBRARY,
    ) -> Plan:
        data = {
            "name": name or key,
            "allowances": dict(allowances),
            "features": features,
            "period": period,
            "rollover_cap": rollover_cap,
        }
        return self._write(lambda conn, now: catalog_service.put_plan(conn, now, key, data, actor))

    def plans(self) -> list[Plan]:
        with self.db.read() as conn:
            return catalog.list_plans(conn)

    def settings(self) -> Settings:
        with self.db.read() as conn:
            return settings_service.current(conn)

    def change_settings(
        self, changes: Mapping[str, object], *, changed_by: str, actor: Actor = LIBRARY
    ) -> Settings:
        return self._write(
            lambda conn, now: settings_service.change(conn, now, changes, changed_by, actor)
        )

    def settings_history(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return settings_service.history(conn)
