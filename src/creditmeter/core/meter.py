"""The verbs of a meter, embedded (:class:`creditmeter.meter.CreditMeter`) or remote
(:class:`creditmeter.client.CreditMeterClient`), and what is built on them once for both.

An app written against :class:`Meter` runs on either: mypy checks that both satisfy it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import IO, Any, Protocol, Unpack

from creditmeter.core.audit import AuditEntry
from creditmeter.core.errors import CreditMeterError
from creditmeter.core.grants import Grant
from creditmeter.core.keys import ApiKey
from creditmeter.core.models import ModelPrice, PriceBookVersion
from creditmeter.core.notifications import NotificationPreferences
from creditmeter.core.payments import AutoRecharge, Checkout, Package, Purchase
from creditmeter.core.plans import Plan
from creditmeter.core.portal import LINK_LIFETIME, PortalSession
from creditmeter.core.pricing import Feature
from creditmeter.core.records import (
    Account,
    Balance,
    Charge,
    CheckResult,
    GrantResult,
    Hold,
    Page,
    Transaction,
    UsageGroup,
    UsageRecord,
)
from creditmeter.core.rerating import RerateBooking, RerateReport
from creditmeter.core.settings import Settings
from creditmeter.core.stats import (
    AccountPage,
    DailyUsage,
    FeatureStats,
    Forecast,
    ModelStats,
    SystemStats,
)
from creditmeter.core.usage import Quantities, UsageEvent, UsageFields
from creditmeter.core.webhooks import Delivery, WebhookEndpoint


class Meter(Protocol):
    """What both meters offer, with the same parameters and records."""

    def close(self) -> None: ...

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
    ) -> Feature: ...

    def features(self) -> list[Feature]: ...

    def sync_prices(self, providers: Sequence[str] | None = None) -> PriceBookVersion: ...

    def price_book_versions(self) -> list[PriceBookVersion]: ...

    def model_prices(
        self,
        *,
        version: int | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> tuple[PriceBookVersion | None, list[ModelPrice]]: ...

    def rerate(
        self,
        *,
        since: datetime,
        until: datetime,
        to_version: int,
        account: str | None = None,
    ) -> RerateReport: ...

    def apply_rerate(
        self,
        *,
        since: datetime,
        until: datetime,
        to_version: int,
        account: str | None = None,
        idempotency_key: str | None = None,
    ) -> RerateBooking: ...

    def put_plan(
        self,
        key: str,
        *,
        allowances: Mapping[str, int | None],
        features: list[str] | str = "*",
        period: str = "calendar_month",
        rollover_cap: int = 0,
        name: str | None = None,
    ) -> Plan: ...

    def plans(self) -> list[Plan]: ...

    def settings(self) -> Settings: ...

    def change_settings(self, changes: Mapping[str, object], *, changed_by: str) -> Settings: ...

    def settings_history(self) -> list[dict[str, Any]]: ...

    def create_account(
        self,
        account_id: str,
        *,
        name: str | None = None,
        plan: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        overdraft_limit: int = 0,
        idempotency_key: str | None = None,
    ) -> Account: ...

    def account(self, account_id: str) -> Account: ...

    def update_account(
        self,
        account_id: str,
        *,
        name: str | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        overdraft_limit: int | None = None,
    ) -> Account: ...

    def change_plan(self, account_id: str, plan: str, *, immediately: bool = False) -> Account: ...

    def list_accounts(self, *, after: str | None = None, limit: int = 100) -> list[Account]: ...

    def create_portal_session(
        self,
        account_id: str,
        *,
        return_url: str | None = None,
        lifetime: timedelta = LINK_LIFETIME,
    ) -> tuple[PortalSession, str]: ...

    def authorize(
        self,
        account_id: str,
        feature: str,
        *,
        estimate: Quantities | None = None,
        credits: int | None = None,
        model: str | None = None,
        member: str | None = None,
        ttl: timedelta | None = None,
        metadata: Mapping[str, Any] | None = None,
        balancing: bool = False,
        idempotency_key: str | None = None,
    ) -> Hold: ...

    def settle(
        self,
        hold_id: str,
        *,
        usage: Quantities | None = None,
        credits: int | None = None,
        model: str | None = None,
        member: str | None = None,
        success: bool = True,
        metadata: Mapping[str, Any] | None = None,
        provider_cost: Decimal | None = None,
        idempotency_key: str | None = None,
    ) -> Charge: ...

    def release(self, hold_id: str, *, idempotency_key: str | None = None) -> Hold: ...

    def hold(self, hold_id: str) -> Hold: ...

    def pending_holds_of(self, account_id: str, *, limit: int = 100) -> list[Hold]: ...

    def charge(self, account_id: str, feature: str, **fields: Unpack[UsageFields]) -> Charge: ...

    def charge_many(self, events: Sequence[UsageEvent]) -> list[Charge | CreditMeterError]: ...

    def check(
        self,
        account_id: str,
        feature: str,
        *,
        usage: Quantities | None = None,
        credits: int | None = None,
        model: str | None = None,
    ) -> CheckResult: ...

    def grant(
        self,
        account_id: str,
        amount: int,
        *,
        source: str = "admin",
        pool: str | None = None,
        priority: int | None = None,
        expires_at: datetime | None = None,
        effective_at: datetime | None = None,
        reason: str | None = None,
        reference: str | None = None,
        idempotency_key: str | None = None,
    ) -> GrantResult: ...

    def void_grant(
        self,
        account_id: str,
        grant_id: str,
        *,
        reason: str,
        held: str = "refuse",
        idempotency_key: str | None = None,
    ) -> Transaction: ...

    def refund(
        self,
        account_id: str,
        *,
        usage_id: str | None = None,
        amount: int | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction: ...

    def put_package(
        self,
        package_id: str,
        *,
        credits: int,
        price: int,
        currency: str,
        name: str | None = None,
        bonus_credits: int = 0,
        popular: bool = False,
        best_value: bool = False,
        active: bool = True,
        sort_order: int = 0,
        stripe_price_id: str | None = None,
    ) -> Package: ...

    def packages(self, *, include_inactive: bool = False) -> list[Package]: ...

    def add_boost_packages(
        self, price: int, currency: str, *, base_credits: int | None = None
    ) -> list[Package]: ...

    def checkout(
        self,
        account_id: str,
        package_id: str,
        *,
        ui_mode: str = "hosted",
        success_url: str | None = None,
        cancel_url: str | None = None,
        save_payment_method: bool = False,
        idempotency_key: str | None = None,
    ) -> Checkout: ...

    def purchases(
        self, account_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Purchase]: ...

    def set_auto_recharge(
        self,
        account_id: str,
        *,
        enabled: bool,
        threshold: int,
        package: str | None = None,
        payment_method: str | None = None,
        monthly_cap: int | None = None,
    ) -> AutoRecharge: ...

    def auto_recharge(self, account_id: str) -> AutoRecharge: ...

    def payment_events(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]: ...

    def balance(self, account_id: str) -> Balance: ...

    def forecast(self, account_id: str) -> Forecast: ...

    def transactions(
        self,
        account_id: str,
        *,
        types: tuple[str, ...] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Transaction]: ...

    def iter_transactions(self, account_id: str, **filters: Any) -> Iterator[Transaction]: ...

    def export_transactions_csv(self, account_id: str, out: IO[str], **filters: Any) -> int: ...

    def usage(
        self,
        account_id: str,
        *,
        feature: str | None = None,
        member: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[UsageRecord]: ...

    def usage_summary(
        self,
        account_id: str,
        *,
        group_by: str = "day",
        feature: str | None = None,
        member: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageGroup]: ...

    def daily_usage(
        self, account_id: str | None, *, since: datetime, until: datetime, by: str = "feature"
    ) -> list[DailyUsage]: ...

    def grants(self, account_id: str, *, include_spent: bool = False) -> list[Grant]: ...

    def stats(
        self, *, since: datetime, until: datetime, currency: str | None = None
    ) -> SystemStats: ...

    def model_stats(self, *, since: datetime, until: datetime) -> list[ModelStats]: ...

    def feature_stats(self, *, since: datetime, until: datetime) -> list[FeatureStats]: ...

    def search_accounts(
        self,
        *,
        query: str | None = None,
        plan: str | None = None,
        status: str | None = None,
        level: str | None = None,
        sort: str = "id",
        descending: bool = False,
        after: str | None = None,
        limit: int = 50,
    ) -> AccountPage: ...

    def audit_log(
        self,
        *,
        actor: str | None = None,
        account: str | None = None,
        actions: tuple[str, ...] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[AuditEntry]: ...

    def iter_audit_log(self, **filters: Any) -> Iterator[AuditEntry]: ...

    def export_audit_log_csv(self, out: IO[str], **filters: Any) -> int: ...

    def create_api_key(
        self, role: str, *, account_id: str | None = None, name: str | None = None
    ) -> tuple[ApiKey, str]: ...

    def revoke_api_key(self, key_id: str) -> None: ...

    def api_keys(self) -> list[ApiKey]: ...

    def notification_preferences(self, account_id: str) -> NotificationPreferences: ...

    def set_notification_preferences(
        self,
        account_id: str,
        *,
        emails: Sequence[str] = (),
        channels: Mapping[str, Sequence[str]] | None = None,
    ) -> NotificationPreferences: ...

    def create_webhook_endpoint(
        self,
        url: str,
        *,
        event_types: Sequence[str] = ("*",),
        description: str = "",
        enabled: bool = True,
    ) -> tuple[WebhookEndpoint, str]: ...

    def update_webhook_endpoint(self, endpoint_id: str, **changes: Any) -> WebhookEndpoint: ...

    def rotate_webhook_secret(
        self, endpoint_id: str, *, overlap: timedelta = timedelta(hours=24)
    ) -> tuple[WebhookEndpoint, str]: ...

    def delete_webhook_endpoint(self, endpoint_id: str) -> None: ...

    def webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint: ...

    def webhook_endpoints(self) -> list[WebhookEndpoint]: ...

    def webhook_deliveries(self, endpoint_id: str, *, limit: int = 100) -> list[Delivery]: ...

    def redeliver_webhook(self, endpoint_id: str, delivery_id: str) -> bool: ...

    def holding(
        self,
        account_id: str,
        feature: str,
        *,
        estimate: Quantities | None = None,
        credits: int | None = None,
        model: str | None = None,
        member: str | None = None,
        ttl: timedelta | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> AbstractContextManager[HeldOperation]: ...


class HeldOperation:
    """The hold of a ``with meter.holding(…)`` block; call :meth:`settle` with the actual
    usage."""

    def __init__(self, meter: Meter, hold: Hold) -> None:
        self.meter = meter
        self.hold = hold
        self.charge: Charge | None = None

    def settle(self, **actual: Any) -> Charge:
        self.charge = self.meter.settle(self.hold.id, **actual)
        return self.charge


class Conveniences:
    """What is built on the verbs, written once for both meters."""

    @contextmanager
    def holding(
        self: Meter,
        account_id: str,
        feature: str,
        *,
        estimate: Quantities | None = None,
        credits: int | None = None,
        model: str | None = None,
        member: str | None = None,
        ttl: timedelta | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Iterator[HeldOperation]:
        """Authorize, run the block, settle. An exception in the block releases the hold;
        a block that ends without calling ``settle`` settles the estimate."""
        held = HeldOperation(
            self,
            self.authorize(
                account_id,
                feature,
                estimate=estimate,
                credits=credits,
                model=model,
                member=member,
                ttl=ttl,
                metadata=metadata,
            ),
        )
        try:
            yield held
        except BaseException:
            if held.charge is None:
                self.release(held.hold.id)
            raise
        if held.charge is None:
            held.settle()
