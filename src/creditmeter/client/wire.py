"""JSON on the wire, and the library's records made from it.

Bodies are written with decimals as strings and read with every JSON fraction as a
``Decimal``: no credit, rate or cost is ever a ``float`` on either side. A body shaped
like its record is read by :func:`creditmeter.core.serialization.from_json`; the readers
here only rename what the HTTP contract names otherwise (``account`` for ``account_id``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from creditmeter.core.audit import AuditEntry
from creditmeter.core.grants import Grant
from creditmeter.core.keys import ApiKey
from creditmeter.core.models import ModelPrice, PriceBookVersion
from creditmeter.core.notifications import NotificationPreferences
from creditmeter.core.payments import (
    AutoRecharge,
    Checkout,
    Package,
    Purchase,
)
from creditmeter.core.plans import Plan
from creditmeter.core.portal import PortalSession
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
from creditmeter.core.serialization import from_json
from creditmeter.core.settings import BalanceWarning, Settings, settings_from_json
from creditmeter.core.stats import (
    AccountPage,
    AccountSummary,
    DailyUsage,
    FeatureStats,
    Forecast,
    ModelStats,
    SystemStats,
    UsageBreakdown,
)
from creditmeter.core.webhooks import Delivery, WebhookEndpoint

Json = dict[str, Any]
B = TypeVar("B", bound=UsageBreakdown)


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")  # never an exponent: 1E-8 is "0.00000001"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(body: object) -> bytes:
    """A request body: decimals as strings (``"0.5"``), times in ISO 8601."""
    return json.dumps(body, default=_plain, separators=(",", ":")).encode()


def loads(content: bytes) -> Any:
    """A response body, with fractions as ``Decimal``."""
    return json.loads(content, parse_float=Decimal)


def query_time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def without_none(fields: Mapping[str, object]) -> Json:
    return {name: value for name, value in fields.items() if value is not None}


def time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def optional_time(text: str | None) -> datetime | None:
    return None if text is None else time(text)


def of_account(data: Json) -> Json:
    """A body whose ``account`` is the record's ``account_id``."""
    return {**data, "account_id": data["account"]}


def page(data: Json, item: Any) -> Page[Any]:
    return Page(data=tuple(item(d) for d in data["data"]), next_cursor=data.get("next_cursor"))


def warnings(data: list[Json]) -> tuple[BalanceWarning, ...]:
    return from_json(tuple[BalanceWarning, ...], data)


def account(data: Json) -> Account:
    return from_json(Account, data)


def balance(data: Json) -> Balance:
    period = data["allowance"]
    return from_json(
        Balance,
        {
            **of_account(data),
            "period_start": period["period_start"],
            "period_end": period["period_end"],
            "purchased_available": data["purchased"]["available"],
        },
    )


def hold(data: Json) -> Hold:
    return from_json(Hold, of_account(data))


def settled(data: Json) -> Charge:
    """The charge of ``POST /v1/holds/{id}/settle``: ``{hold, usage_id, credits, …}``."""
    held = data["hold"]
    return Charge(
        usage_id=data["usage_id"],
        account_id=held["account"],
        feature=held["feature"],
        credits=data["credits"],
        charged=data["charged"],
        debited=data["debited"],
        uncollected=data["uncollected"],
        available_after=data["available_after"],
        transaction_id=data["transaction_id"],
        hold_id=held["id"],
        warnings=warnings(data["warnings"]),
    )


def charged(data: Json) -> Charge:
    """The charge of ``POST /v1/usage``: ``{id, account, feature, credits, …}``."""
    return from_json(Charge, {**of_account(data), "usage_id": data["id"]})


def check(data: Json) -> CheckResult:
    return from_json(CheckResult, data)


def transaction(data: Json) -> Transaction:
    return from_json(Transaction, of_account(data))


def usage_record(data: Json) -> UsageRecord:
    return from_json(UsageRecord, of_account(data))


def usage_group(data: Json) -> UsageGroup:
    return from_json(UsageGroup, data)


def grant(data: Json) -> Grant:
    return from_json(Grant, of_account(data))


def grant_result(data: Json) -> GrantResult:
    return from_json(GrantResult, data)


def feature(data: Json) -> Feature:
    """A feature: its pricing rule's fields stand beside its own."""
    return from_json(Feature, {**data, "rule": data})


def price_book_version(data: Json) -> PriceBookVersion:
    return from_json(PriceBookVersion, data)


def model_price(data: Json) -> ModelPrice:
    return from_json(ModelPrice, data)


def rerate_report(data: Json) -> RerateReport:
    return from_json(RerateReport, data)


def rerate_booking(data: Json) -> RerateBooking:
    transactions = [of_account(t) for t in data["transactions"]]
    return from_json(RerateBooking, {**data, "transactions": transactions})


def plan(data: Json) -> Plan:
    return from_json(Plan, {**data, "rollover_cap": data["rollover"]})


def settings(data: Json) -> Settings:
    return settings_from_json(data)


def settings_version(data: Json) -> dict[str, Any]:
    return {**data, "changed_at": time(data["changed_at"])}


def api_key(data: Json) -> ApiKey:
    return from_json(ApiKey, of_account(data))


def notification_preferences(data: Json) -> NotificationPreferences:
    return from_json(NotificationPreferences, data)


def webhook_endpoint(data: Json) -> WebhookEndpoint:
    return from_json(WebhookEndpoint, data)


def delivery(endpoint_id: str) -> Callable[[Json], Delivery]:
    return lambda data: from_json(Delivery, {**data, "endpoint_id": endpoint_id})


def audit_entry(data: Json) -> AuditEntry:
    actor = {"kind": data["actor_kind"], "key_id": data.get("actor_key_id")}
    return from_json(
        AuditEntry,
        {
            **data,
            "actor": actor,
            "account_id": data.get("account"),
            "subject_id": data.get("subject"),
        },
    )


def package(data: Json) -> Package:
    return from_json(Package, data)


def checkout(data: Json) -> Checkout:
    return from_json(Checkout, data)


def purchase(data: Json) -> Purchase:
    return from_json(Purchase, {**of_account(data), "package_id": data["package"]})


def auto_recharge(data: Json) -> AutoRecharge:
    return from_json(AutoRecharge, {**of_account(data), "package_id": data.get("package")})


def payment_event(data: Json) -> dict[str, Any]:
    return {
        **data,
        "received_at": time(data["received_at"]),
        "handled_at": optional_time(data.get("handled_at")),
    }


def breakdown(kind: type[B], data: Json) -> B:
    """A model's or a feature's usage: dollars and the ratio are decimal strings."""
    return from_json(kind, data)


def model_stats(data: Json) -> ModelStats:
    return breakdown(ModelStats, data)


def feature_stats(data: Json) -> FeatureStats:
    return breakdown(FeatureStats, data)


def system_stats(data: Json) -> SystemStats:
    top = [of_account(t) for t in data["top_accounts"]]
    return from_json(SystemStats, {**data, "top_accounts": top})


def account_summary(data: Json) -> AccountSummary:
    return from_json(AccountSummary, data)


def account_page(data: Json) -> AccountPage:
    return from_json(AccountPage, {"items": data["data"], "next_cursor": data["next_cursor"]})


def daily_usage(data: Json) -> DailyUsage:
    return from_json(DailyUsage, data)


def forecast(balance: Json) -> Forecast:
    """The forecast of ``GET /v1/accounts/{id}/balance``, with the balance's account and
    available credits."""
    return from_json(
        Forecast,
        {
            **balance["forecast"],
            "account_id": balance["account"],
            "available": balance["available"],
        },
    )


def portal_session(data: Json) -> tuple[PortalSession, str]:
    """The session of ``POST /v1/accounts/{id}/portal-sessions`` and its link's token, the
    last segment of its ``url``."""
    return from_json(PortalSession, of_account(data)), data["url"].rsplit("/", 1)[1]
