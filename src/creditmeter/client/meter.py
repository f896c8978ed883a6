"""``CreditMeterClient``: the library's verbs over the HTTP API.

Each verb has the signature of the ``CreditMeter`` verb of the same name and returns the
same records (:mod:`creditmeter.core.records`) or raises the same errors
(:mod:`creditmeter.core.errors`), so an app moves from the embedded library to a
creditmeter service by changing the line that makes its meter::

    meter = CreditMeter()                                   # embedded
    meter = CreditMeterClient("https://credits.internal", api_key)  # remote
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from typing import IO, Any, Final, TypeVar, Unpack
from urllib.parse import quote

import httpx2

from creditmeter.client import wire
from creditmeter.client.errors import RemoteError, ServiceUnavailable, error_of
from creditmeter.core.audit import AuditEntry
from creditmeter.core.errors import CreditMeterError, InvalidRequest
from creditmeter.core.grants import Grant
from creditmeter.core.keys import ApiKey
from creditmeter.core.meter import Conveniences, HeldOperation
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

T = TypeVar("T")
Params = Mapping[str, str | int | bool | Sequence[str] | None]

DEFAULT_TIMEOUT: Final = 10.0
PAGE_SIZE: Final = 500
PENDING_HOLDS_SERVED: Final = 100
"""The pending holds ``GET /v1/accounts/{id}/holds`` answers with, at most."""


def _user_agent() -> str:
    try:
        return f"creditmeter-client/{version('creditmeter')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "creditmeter-client"


def _segment(value: str) -> str:
    """One path segment: the host's own ids may hold any character."""
    return quote(value, safe="")


def _usage_body(event: UsageEvent) -> wire.Json:
    """A usage as ``POST /v1/usage`` takes it: the names of its idempotency parameters."""
    return {
        name: dict(value) if isinstance(value, Mapping) else value
        for name, value in event.params().items()
        if value is not None
    }


def _seconds(ttl: timedelta | None) -> int | None:
    if ttl is None:
        return None
    seconds = ttl.total_seconds()
    if seconds != int(seconds):
        raise InvalidRequest("ttl must be a whole number of seconds over HTTP")
    return int(seconds)


class CreditMeterClient(Conveniences):
    """The creditmeter HTTP API at ``base_url``, called with ``api_key``.

    Calls are synchronous and share one connection pool; close the client (or use it as
    a context manager) when done. ``timeout`` is in seconds. ``transport`` replaces the
    network, for tests (``httpx2.MockTransport``, ``httpx2.ASGITransport``).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx2.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": _user_agent(),
            },
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CreditMeterClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CreditMeterClient({self.base_url!r})"

    # Catalog and settings.

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
    ) -> Feature:
        """Create or change a priced feature; a change is a new version of its rule.
        ``unknown_models``: a model that ``models`` cannot price is refused
        (``"refuse"``) or priced at ``rates`` (``"default_rates"``). ``cost_plus``: priced
        from the provider's cost at the price book's model prices instead of ``rates``;
        its ``multiplier`` defaults to the settings' default multiplier (else to 1)."""
        body = wire.without_none(
            {
                "name": name,
                "pool": pool,
                "rates": rates or {},
                "models": models or {},
                "multiplier": multiplier,
                "unknown_models": unknown_models,
                "cost_plus": cost_plus,
            }
        )
        return wire.feature(self._call("PUT", f"/v1/features/{_segment(key)}", body=body))

    def features(self) -> list[Feature]:
        return list(self._list("/v1/features", wire.feature))

    def sync_prices(self, providers: Sequence[str] | None = None) -> PriceBookVersion:
        """A new price-book version with the price catalogue's model prices of
        ``providers`` (default: every provider); the latest version if nothing changed."""
        body = {} if providers is None else {"providers": list(providers)}
        return wire.price_book_version(self._call("POST", "/v1/prices/sync", body=body))

    def price_book_versions(self) -> list[PriceBookVersion]:
        return list(self._list("/v1/prices/versions", wire.price_book_version))

    def model_prices(
        self,
        *,
        version: int | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> tuple[PriceBookVersion | None, list[ModelPrice]]:
        """A price-book version (default: the latest; none before the first sync) and its
        model prices, of one provider or model if asked."""
        params = {"version": version, "provider": provider, "model": model}
        data = self._call("GET", "/v1/prices", params=params)
        found = data["version"]
        return (
            None if found is None else wire.price_book_version(found),
            [wire.model_price(p) for p in data["data"]],
        )

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
        params = {
            "since": wire.query_time(since),
            "until": wire.query_time(until),
            "version": to_version,
            "account": account,
        }
        return wire.rerate_report(self._call("GET", "/v1/rerate", params=params))

    def apply_rerate(
        self,
        *,
        since: datetime,
        until: datetime,
        to_version: int,
        account: str | None = None,
        idempotency_key: str | None = None,
    ) -> RerateBooking:
        """Book what :meth:`rerate` reports, one ``adjustment`` transaction per account
        whose usage re-rates at other credits; a window of an account is booked once
        (``AlreadyRerated`` otherwise). A superadmin's."""
        body = wire.without_none(
            {"since": since, "until": until, "version": to_version, "account": account}
        )
        data = self._call("POST", "/v1/rerate/apply", body=body, idempotency_key=idempotency_key)
        return wire.rerate_booking(data)

    def put_plan(
        self,
        key: str,
        *,
        allowances: Mapping[str, int | None],
        features: list[str] | str = "*",
        period: str = "calendar_month",
        rollover_cap: int = 0,
        name: str | None = None,
    ) -> Plan:
        body = wire.without_none(
            {
                "name": name,
                "allowances": dict(allowances),
                "features": features,
                "period": period,
                "rollover": rollover_cap,
            }
        )
        return wire.plan(self._call("PUT", f"/v1/plans/{_segment(key)}", body=body))

    def plans(self) -> list[Plan]:
        return list(self._list("/v1/plans", wire.plan))

    def settings(self) -> Settings:
        return wire.settings(self._call("GET", "/v1/settings"))

    def change_settings(
        self, changes: Mapping[str, object], *, changed_by: str | None = None
    ) -> Settings:
        """Change system settings; the service records the key that made the change
        (``changed_by``, which the library needs, is not sent: the key speaks for it)."""
        return wire.settings(self._call("PUT", "/v1/settings", body=dict(changes)))

    def settings_history(self) -> list[dict[str, Any]]:
        """Every version of the settings, newest first: ``version``, ``values``,
        ``changes``, ``changed_by`` (the key that made it) and ``changed_at``."""
        data = self._call("GET", "/v1/settings/history")
        return [wire.settings_version(v) for v in data["data"]]

    # Accounts.

    def create_account(
        self,
        account_id: str,
        *,
        name: str | None = None,
        plan: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        overdraft_limit: int = 0,
        idempotency_key: str | None = None,
    ) -> Account:
        """Create an account, or return it as it is if the id exists (the welcome bonus
        and the first allowance are granted once, at creation)."""
        body = {
            "id": account_id,
            "name": name,
            "plan": plan,
            "metadata": dict(metadata or {}),
            "overdraft_limit": overdraft_limit,
        }
        return wire.account(
            self._call("POST", "/v1/accounts", body=body, idempotency_key=idempotency_key)
        )

    def account(self, account_id: str) -> Account:
        return wire.account(self._call("GET", f"/v1/accounts/{_segment(account_id)}"))

    def update_account(
        self,
        account_id: str,
        *,
        name: str | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        overdraft_limit: int | None = None,
    ) -> Account:
        body = wire.without_none(
            {
                "name": name,
                "status": None if status is None else str(status),
                "metadata": None if metadata is None else dict(metadata),
                "overdraft_limit": overdraft_limit,
            }
        )
        return self._patch_account(account_id, body)

    def change_plan(self, account_id: str, plan: str, *, immediately: bool = False) -> Account:
        """Upgrade now (the allowance is topped up), or downgrade at the next period."""
        return self._patch_account(account_id, {"plan": plan, "plan_immediately": immediately})

    def list_accounts(self, *, after: str | None = None, limit: int = 100) -> list[Account]:
        data = self._call("GET", "/v1/accounts", params={"cursor": after, "limit": limit})
        return list(wire.page(data, wire.account).data)

    def create_portal_session(
        self,
        account_id: str,
        *,
        return_url: str | None = None,
        lifetime: timedelta = LINK_LIFETIME,
    ) -> tuple[PortalSession, str]:
        """A one-time link's session to the account's customer portal and the link's
        token, which cannot be shown again; the link is ``{public URL}/portal/session/{token}``.
        The service gives every link the same ``lifetime`` (five minutes): another one is
        refused before sending."""
        if lifetime != LINK_LIFETIME:
            raise InvalidRequest(
                f"a portal link lives {int(LINK_LIFETIME.total_seconds())} seconds over HTTP"
            )
        path = f"/v1/accounts/{_segment(account_id)}/portal-sessions"
        body = wire.without_none({"return_url": return_url})
        return wire.portal_session(self._call("POST", path, body=body))

    def _patch_account(self, account_id: str, body: Mapping[str, object]) -> Account:
        path = f"/v1/accounts/{_segment(account_id)}"
        return wire.account(self._call("PATCH", path, body=body))

    # Metering.

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
    ) -> Hold:
        """Reserve the estimate's credits; raises ``InsufficientCredits`` if short.
        ``balancing=True`` reserves what there is up to the estimate instead."""
        body = wire.without_none(
            {
                "account": account_id,
                "feature": feature,
                "estimate": estimate,
                "credits": credits,
                "model": model,
                "member": member,
                "ttl_seconds": _seconds(ttl),
                "metadata": None if metadata is None else dict(metadata),
                "balancing": balancing or None,
            }
        )
        return wire.hold(
            self._call("POST", "/v1/holds", body=body, idempotency_key=idempotency_key)
        )

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
    ) -> Charge:
        """Charge a hold's actual usage (its estimate if none is given) and release the
        rest; ``success=False`` releases it all and records the usage at no cost."""
        body = wire.without_none(
            {
                "usage": usage,
                "credits": credits,
                "model": model,
                "member": member,
                "success": success,
                "metadata": None if metadata is None else dict(metadata),
                "provider_cost": provider_cost,
            }
        )
        path = f"/v1/holds/{_segment(hold_id)}/settle"
        return wire.settled(self._call("POST", path, body=body, idempotency_key=idempotency_key))

    def release(self, hold_id: str, *, idempotency_key: str | None = None) -> Hold:
        """Return all of a hold's credits: the operation did not happen."""
        path = f"/v1/holds/{_segment(hold_id)}/release"
        return wire.hold(self._call("POST", path, idempotency_key=idempotency_key))

    def hold(self, hold_id: str) -> Hold:
        """A hold as it is now: one past its expiry is released (and reported expired)."""
        return wire.hold(self._call("GET", f"/v1/holds/{_segment(hold_id)}"))

    def pending_holds_of(self, account_id: str, *, limit: int = 100) -> list[Hold]:
        """The account's pending holds that are not past their expiry, oldest first. The
        service answers with the first 100: a larger ``limit`` is refused before sending."""
        if limit > PENDING_HOLDS_SERVED:
            raise InvalidRequest(f"limit must be at most {PENDING_HOLDS_SERVED} over HTTP")
        data = self._call("GET", f"/v1/accounts/{_segment(account_id)}/holds")
        return [wire.hold(h) for h in data["data"]][: max(limit, 0)]

    def charge(self, account_id: str, feature: str, **fields: Unpack[UsageFields]) -> Charge:
        """Record a usage and charge it in one step; raises ``InsufficientCredits`` if short.
        The fields are those of :class:`UsageEvent`."""
        event = UsageEvent(account_id, feature, **fields)
        key = event.idempotency_key
        return wire.charged(
            self._call("POST", "/v1/usage", body=_usage_body(event), idempotency_key=key)
        )

    def charge_many(self, events: Sequence[UsageEvent]) -> list[Charge | CreditMeterError]:
        """Charge up to 1,000 usages in one request (``POST /v1/usage/batch``), each as
        :meth:`charge` would. Over HTTP every event needs its own ``idempotency_key``: a
        batch is retried as a whole. Each result is the charge, or the error that refused
        that event."""
        missing = [i for i, e in enumerate(events) if e.idempotency_key is None]
        if missing:
            raise InvalidRequest(f"batch events {missing} have no idempotency_key")
        body = {
            "events": [
                {**_usage_body(event), "idempotency_key": event.idempotency_key} for event in events
            ]
        }
        results = self._call("POST", "/v1/usage/batch", body=body)["results"]
        outcome: list[Charge | CreditMeterError] = []
        for result in sorted(results, key=lambda r: r["index"]):
            if "error" in result:
                outcome.append(error_of(result["status"], {"error": result["error"]}))
            else:
                outcome.append(wire.charged(result))
        return outcome

    def check(
        self,
        account_id: str,
        feature: str,
        *,
        usage: Quantities | None = None,
        credits: int | None = None,
        model: str | None = None,
    ) -> CheckResult:
        """Would this usage be allowed now, and what would it cost? Changes nothing."""
        body = wire.without_none(
            {"feature": feature, "usage": usage, "credits": credits, "model": model}
        )
        path = f"/v1/accounts/{_segment(account_id)}/check"
        return wire.check(self._call("POST", path, body=body))

    # Grants and refunds.

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
    ) -> GrantResult:
        body = wire.without_none(
            {
                "amount": amount,
                "source": str(source),
                "pool": pool,
                "priority": priority,
                "expires_at": expires_at,
                "effective_at": effective_at,
                "reason": reason,
                "reference": reference,
            }
        )
        path = f"/v1/accounts/{_segment(account_id)}/grants"
        return wire.grant_result(
            self._call("POST", path, body=body, idempotency_key=idempotency_key)
        )

    def void_grant(
        self,
        account_id: str,
        grant_id: str,
        *,
        reason: str,
        held: str = "refuse",
        idempotency_key: str | None = None,
    ) -> Transaction:
        """Take the credits left in a grant away; ``GrantHeld`` if pending holds reserve
        some of them, unless ``held="release"``."""
        path = f"/v1/accounts/{_segment(account_id)}/grants/{_segment(grant_id)}/void"
        body = {"reason": reason, "held": held}
        return wire.transaction(
            self._call("POST", path, body=body, idempotency_key=idempotency_key)
        )

    def refund(
        self,
        account_id: str,
        *,
        usage_id: str | None = None,
        amount: int | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """Give a usage's credits back to the grants they came from, or ``amount`` credits
        as a new refund grant."""
        if (usage_id is None) == (amount is None):
            raise InvalidRequest("refund either a usage_id or an amount")
        body = wire.without_none({"usage_id": usage_id, "amount": amount, "reason": reason})
        path = f"/v1/accounts/{_segment(account_id)}/refunds"
        return wire.transaction(
            self._call("POST", path, body=body, idempotency_key=idempotency_key)
        )

    # Credit packs, purchases and auto-recharge.

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
    ) -> Package:
        """Create a credit pack, or replace it (purchases keep what they were sold)."""
        body = wire.without_none(
            {
                "name": name,
                "credits": credits,
                "bonus_credits": bonus_credits,
                "price": {"amount": price, "currency": currency.lower()},
                "popular": popular,
                "best_value": best_value,
                "active": active,
                "sort_order": sort_order,
                "stripe_price_id": stripe_price_id,
            }
        )
        path = f"/v1/packages/{_segment(package_id)}"
        return wire.package(self._call("PUT", path, body=body))

    def packages(self, *, include_inactive: bool = False) -> list[Package]:
        """The packs for sale in their sort order (all of them with ``include_inactive``)."""
        data = self._call("GET", "/v1/packages", params={"include_inactive": include_inactive})
        return [wire.package(p) for p in data["data"]]

    def add_boost_packages(
        self, price: int, currency: str, *, base_credits: int | None = None
    ) -> list[Package]:
        """Write the three boost packs (0.5×, 1× +10 %, 2× +15 %) derived from
        ``base_credits`` priced at ``price``; by default the smallest plan's allowance."""
        body = wire.without_none(
            {"price": {"amount": price, "currency": currency.lower()}, "base_credits": base_credits}
        )
        data = self._call("POST", "/v1/packages/boost", body=body)
        return [wire.package(p) for p in data["data"]]

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
    ) -> Checkout:
        """Start buying a package: a pending purchase and the provider's checkout for it.
        The account is credited when the payment provider confirms the payment."""
        body = wire.without_none(
            {
                "package": package_id,
                "ui_mode": ui_mode,
                "success_url": success_url,
                "cancel_url": cancel_url,
                "save_payment_method": save_payment_method,
            }
        )
        path = f"/v1/accounts/{_segment(account_id)}/checkout"
        return wire.checkout(self._call("POST", path, body=body, idempotency_key=idempotency_key))

    def purchases(
        self, account_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Purchase]:
        """The account's purchases, newest first; pass ``next_cursor`` back for more."""
        path = f"/v1/accounts/{_segment(account_id)}/purchases"
        data = self._call("GET", path, params={"limit": limit, "cursor": cursor})
        return wire.page(data, wire.purchase)

    def set_auto_recharge(
        self,
        account_id: str,
        *,
        enabled: bool,
        threshold: int,
        package: str | None = None,
        payment_method: str | None = None,
        monthly_cap: int | None = None,
    ) -> AutoRecharge:
        """Recharge the account with ``package`` off-session, charged to the saved
        ``payment_method``, whenever its available credits fall below ``threshold``; at
        most ``monthly_cap`` minor units a calendar month."""
        body = {
            "enabled": enabled,
            "threshold": threshold,
            "package": package,
            "payment_method": payment_method,
            "monthly_cap": monthly_cap,
        }
        path = f"/v1/accounts/{_segment(account_id)}/auto-recharge"
        return wire.auto_recharge(self._call("PUT", path, body=body))

    def auto_recharge(self, account_id: str) -> AutoRecharge:
        path = f"/v1/accounts/{_segment(account_id)}/auto-recharge"
        return wire.auto_recharge(self._call("GET", path))

    def payment_events(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Stored events, newest first: their type, what handling them did and why."""
        data = self._call(
            "GET", "/v1/admin/payment-events", params={"status": status, "limit": limit}
        )
        return [wire.payment_event(e) for e in data["data"]]

    # Queries.

    def balance(self, account_id: str) -> Balance:
        return wire.balance(self._call("GET", f"/v1/accounts/{_segment(account_id)}/balance"))

    def forecast(self, account_id: str) -> Forecast:
        """When the account's available credits run out at its burn rate of the last 30
        days: the forecast the service answers with the balance."""
        return wire.forecast(self._call("GET", f"/v1/accounts/{_segment(account_id)}/balance"))

    def transactions(
        self,
        account_id: str,
        *,
        types: tuple[str, ...] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Transaction]:
        """The account's ledger, newest first; pass ``next_cursor`` back for the next page."""
        params = self._transaction_filters(types, since, until)
        data = self._call(
            "GET",
            f"/v1/accounts/{_segment(account_id)}/transactions",
            params={**params, "limit": limit, "cursor": cursor},
        )
        return wire.page(data, wire.transaction)

    def iter_transactions(self, account_id: str, **filters: Any) -> Iterator[Transaction]:
        """Every transaction matching the filters, newest first, a page at a time."""
        cursor = None
        while True:
            page = self.transactions(account_id, limit=PAGE_SIZE, cursor=cursor, **filters)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def export_transactions_csv(self, account_id: str, out: IO[str], **filters: Any) -> int:
        """Write the account's ledger as CSV, as the service streams it; returns the
        number of transactions written. The filters are those of :meth:`transactions`."""
        params = {**self._transaction_filters(**filters), "format": "csv"}
        path = f"/v1/accounts/{_segment(account_id)}/transactions"
        return self._stream_csv(path, params, out)

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
    ) -> Page[UsageRecord]:
        params = {
            **self._usage_filters(feature, member, since, until),
            "limit": limit,
            "cursor": cursor,
        }
        data = self._call("GET", f"/v1/accounts/{_segment(account_id)}/usage", params=params)
        return wire.page(data, wire.usage_record)

    def iter_usage(self, account_id: str, **filters: Any) -> Iterator[UsageRecord]:
        """Every usage record matching the filters, newest first, a page at a time."""
        cursor = None
        while True:
            page = self.usage(account_id, limit=PAGE_SIZE, cursor=cursor, **filters)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def export_usage_csv(
        self,
        account_id: str,
        out: IO[str],
        *,
        feature: str | None = None,
        member: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Write the account's usage records as CSV; returns the number of records."""
        params = {**self._usage_filters(feature, member, since, until), "format": "csv"}
        path = f"/v1/accounts/{_segment(account_id)}/usage"
        return self._stream_csv(path, params, out)

    def usage_summary(
        self,
        account_id: str,
        *,
        group_by: str = "day",
        feature: str | None = None,
        member: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageGroup]:
        params = {**self._usage_filters(feature, member, since, until), "group_by": group_by}
        path = f"/v1/accounts/{_segment(account_id)}/usage/summary"
        return [wire.usage_group(g) for g in self._call("GET", path, params=params)["data"]]

    def daily_usage(
        self, account_id: str | None, *, since: datetime, until: datetime, by: str = "feature"
    ) -> list[DailyUsage]:
        """Billable credits per UTC day of ``[since, until)`` and feature, model or member
        (``by``), of one account or (``None``, an admin's) of all."""
        path = (
            "/v1/admin/usage/daily"
            if account_id is None
            else f"/v1/accounts/{_segment(account_id)}/usage/daily"
        )
        params = {"since": wire.query_time(since), "until": wire.query_time(until), "by": by}
        return [wire.daily_usage(d) for d in self._call("GET", path, params=params)["data"]]

    def grants(self, account_id: str, *, include_spent: bool = False) -> list[Grant]:
        """The account's grants in consumption order of priority and age; by default only
        those that still hold credits."""
        path = f"/v1/accounts/{_segment(account_id)}/grants"
        data = self._call("GET", path, params={"include_spent": include_spent})
        return list(wire.page(data, wire.grant).data)

    @staticmethod
    def _transaction_filters(
        types: tuple[str, ...] = (), since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, str | list[str] | None]:
        return {
            "type": [str(t) for t in types],
            "from": wire.query_time(since),
            "to": wire.query_time(until),
        }

    @staticmethod
    def _usage_filters(
        feature: str | None, member: str | None, since: datetime | None, until: datetime | None
    ) -> dict[str, str | None]:
        return {
            "feature": feature,
            "member": member,
            "from": wire.query_time(since),
            "to": wire.query_time(until),
        }

    # The admin overview and account search (docs/stats.md).

    def stats(
        self, *, since: datetime, until: datetime, currency: str | None = None
    ) -> SystemStats:
        """The admin overview of ``[since, until)``: credits issued and consumed, billable
        credits against the providers' cost and the margin, revenue by currency net of
        refunds (``currency``: that one only), accounts, balances and top consumers."""
        params = {**self._range(since, until), "currency": currency}
        return wire.system_stats(self._call("GET", "/v1/admin/stats", params=params))

    def model_stats(self, *, since: datetime, until: datetime) -> list[ModelStats]:
        """Usage of ``[since, until)`` by model (``""``: none named), with cost and margin."""
        data = self._call("GET", "/v1/admin/stats/models", params=self._range(since, until))
        return [wire.model_stats(m) for m in data["data"]]

    def feature_stats(self, *, since: datetime, until: datetime) -> list[FeatureStats]:
        """Usage of ``[since, until)`` by feature, with cost and margin."""
        data = self._call("GET", "/v1/admin/stats/features", params=self._range(since, until))
        return [wire.feature_stats(f) for f in data["data"]]

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
    ) -> AccountPage:
        """Accounts whose id or name contains ``query``, filtered by plan, status and level
        (``healthy``, ``low``, ``critical``), sorted by ``sort`` (id, name, plan, status,
        created_at, available) then id; pass ``next_cursor`` as ``after`` for the next page."""
        params = {
            "q": query,
            "plan": plan,
            "status": None if status is None else str(status),
            "level": None if level is None else str(level),
            "sort": str(sort),
            "order": "desc" if descending else "asc",
            "cursor": after,
            "limit": limit,
        }
        return wire.account_page(self._call("GET", "/v1/admin/accounts", params=params))

    @staticmethod
    def _range(since: datetime, until: datetime) -> dict[str, str | None]:
        return {"since": wire.query_time(since), "until": wire.query_time(until)}

    # The audit log.

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
    ) -> Page[AuditEntry]:
        """Who changed what, newest first; pass ``next_cursor`` back for the next page.
        ``actor``: a key's id, or a kind of actor (``api_key``, ``admin_key_env``,
        ``library``, ``cli``)."""
        params = self._audit_filters(actor, account, actions, since, until)
        data = self._call(
            "GET", "/v1/audit-log", params={**params, "limit": limit, "cursor": cursor}
        )
        return wire.page(data, wire.audit_entry)

    def iter_audit_log(self, **filters: Any) -> Iterator[AuditEntry]:
        """Every entry matching the filters, newest first, a page at a time."""
        cursor = None
        while True:
            page = self.audit_log(limit=PAGE_SIZE, cursor=cursor, **filters)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def export_audit_log_csv(self, out: IO[str], **filters: Any) -> int:
        """Write the audit log as CSV, as the service streams it; returns the number of
        entries written. The filters are those of :meth:`audit_log`."""
        params = {**self._audit_filters(**filters), "format": "csv"}
        return self._stream_csv("/v1/audit-log", params, out)

    @staticmethod
    def _audit_filters(
        actor: str | None = None,
        account: str | None = None,
        actions: tuple[str, ...] = (),
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, str | list[str] | None]:
        return {
            "actor": actor,
            "account": account,
            "action": [str(a) for a in actions],
            "from": wire.query_time(since),
            "to": wire.query_time(until),
        }

    # API keys.

    def create_api_key(
        self, role: str, *, account_id: str | None = None, name: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new API key and its secret, which is not stored and cannot be shown again."""
        body = wire.without_none({"role": str(role), "account": account_id, "name": name})
        data = self._call("POST", "/v1/api-keys", body=body)
        return wire.api_key(data), data["key"]

    def revoke_api_key(self, key_id: str) -> None:
        self._call("DELETE", f"/v1/api-keys/{_segment(key_id)}")

    def api_keys(self) -> list[ApiKey]:
        return list(self._list("/v1/api-keys", wire.api_key))

    # Notification preferences.

    def notification_preferences(self, account_id: str) -> NotificationPreferences:
        """An account's billing email addresses and the channels of each event type."""
        path = f"/v1/accounts/{_segment(account_id)}/notification-preferences"
        return wire.notification_preferences(self._call("GET", path))

    def set_notification_preferences(
        self,
        account_id: str,
        *,
        emails: Sequence[str] = (),
        channels: Mapping[str, Sequence[str]] | None = None,
    ) -> NotificationPreferences:
        """Replace an account's preferences: its billing addresses and, per event type or
        ``*``, the channels (``email``, ``webhook``) it is sent on."""
        path = f"/v1/accounts/{_segment(account_id)}/notification-preferences"
        body = {
            "emails": list(emails),
            "channels": {k: list(v) for k, v in (channels or {}).items()},
        }
        return wire.notification_preferences(self._call("PUT", path, body=body))

    # Outgoing webhooks.

    def create_webhook_endpoint(
        self,
        url: str,
        *,
        event_types: Sequence[str] = ("*",),
        description: str = "",
        enabled: bool = True,
    ) -> tuple[WebhookEndpoint, str]:
        """A new endpoint and its signing secret (``whsec_…``), shown this once."""
        body = {
            "url": url,
            "event_types": list(event_types),
            "description": description,
            "enabled": enabled,
        }
        data = self._call("POST", "/v1/webhook-endpoints", body=body)
        return wire.webhook_endpoint(data), data["secret"]

    def update_webhook_endpoint(self, endpoint_id: str, **changes: Any) -> WebhookEndpoint:
        """Change some of ``url``, ``event_types``, ``description`` and ``enabled``."""
        path = f"/v1/webhook-endpoints/{_segment(endpoint_id)}"
        return wire.webhook_endpoint(self._call("PATCH", path, body=changes))

    def rotate_webhook_secret(
        self, endpoint_id: str, *, overlap: timedelta = timedelta(hours=24)
    ) -> tuple[WebhookEndpoint, str]:
        """A new signing secret for the endpoint, which cannot be shown again; the old one
        signs too for ``overlap`` (whole seconds, at most 7 days)."""
        path = f"/v1/webhook-endpoints/{_segment(endpoint_id)}/rotate-secret"
        body = {"overlap_seconds": int(overlap.total_seconds())}
        data = self._call("POST", path, body=body)
        return wire.webhook_endpoint(data), data["secret"]

    def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        self._call("DELETE", f"/v1/webhook-endpoints/{_segment(endpoint_id)}")

    def webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        path = f"/v1/webhook-endpoints/{_segment(endpoint_id)}"
        return wire.webhook_endpoint(self._call("GET", path))

    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        return list(self._list("/v1/webhook-endpoints", wire.webhook_endpoint))

    def webhook_deliveries(self, endpoint_id: str, *, limit: int = 100) -> list[Delivery]:
        """An endpoint's delivery attempts, newest first."""
        path = f"/v1/webhook-endpoints/{_segment(endpoint_id)}/deliveries"
        data = self._call("GET", path, params={"limit": str(limit)})
        return [wire.delivery(endpoint_id)(d) for d in data["data"]]

    def redeliver_webhook(self, endpoint_id: str, delivery_id: str) -> bool:
        """Queue the event of one of the endpoint's deliveries to it again, with the same
        ``webhook-id``; ``False`` if that delivery was redelivered already."""
        path = (
            f"/v1/webhook-endpoints/{_segment(endpoint_id)}"
            f"/deliveries/{_segment(delivery_id)}/redeliver"
        )
        queued: bool = self._call("POST", path)["queued"]
        return queued

    # HTTP.

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, object] | None = None,
        params: Params | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """The decoded body of a successful answer; an error answer raised as the
        library's error."""
        response = self._send(method, path, body=body, params=params, key=idempotency_key)
        try:
            if response.status_code >= 400:
                raise self._error(response)
            if response.status_code == 204 or not response.content:
                return None
            return wire.loads(response.content)
        finally:
            response.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, object] | None = None,
        params: Params | None = None,
        key: str | None = None,
        stream: bool = False,
    ) -> httpx2.Response:
        headers = {}
        if key is not None:
            headers["Idempotency-Key"] = key
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = wire.dumps(body)
        query = {name: value for name, value in (params or {}).items() if value is not None}
        request = self._http.build_request(
            method, path, content=content, params=query, headers=headers
        )
        try:
            return self._http.send(request, stream=stream)
        except httpx2.TimeoutException as error:
            raise ServiceUnavailable(
                f"{method} {path}: no answer in time ({error})", status=None
            ) from error
        except httpx2.TransportError as error:
            raise ServiceUnavailable(
                f"{method} {path}: cannot reach {self.base_url} ({error})", status=None
            ) from error

    @staticmethod
    def _error(response: httpx2.Response) -> CreditMeterError:
        response.read()
        try:
            body = wire.loads(response.content) if response.content else None
        except ValueError:
            body = None
        return error_of(
            response.status_code,
            body,
            retry_after=response.headers.get("Retry-After"),
            reason=response.reason_phrase,
        )

    def _list(self, path: str, item: Callable[[wire.Json], T]) -> Iterator[T]:
        """Every item of a list endpoint, following ``next_cursor``."""
        cursor = None
        while True:
            data = self._call("GET", path, params={"cursor": cursor})
            yield from (item(d) for d in data["data"])
            cursor = data.get("next_cursor")
            if cursor is None:
                return

    def _stream_csv(self, path: str, params: Params, out: IO[str]) -> int:
        """Write the CSV the service streams to ``out``; returns its number of rows."""
        response = self._send("GET", path, params=params, stream=True)
        try:
            if response.status_code >= 400:
                raise self._error(response)

            def lines() -> Iterator[str]:
                pending = ""
                for text in response.iter_text():
                    out.write(text)
                    *complete, pending = (pending + text).split("\n")
                    yield from (line + "\n" for line in complete)
                if pending:
                    yield pending

            return max(sum(1 for _ in csv.reader(lines())) - 1, 0)
        except httpx2.TransportError as error:
            raise ServiceUnavailable(
                f"GET {path}: the export was cut off ({error})", status=None
            ) from error
        finally:
            response.close()


__all__ = ["CreditMeterClient", "HeldOperation", "RemoteError"]
