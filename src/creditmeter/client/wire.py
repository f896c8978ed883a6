"""JSON on the wire, and the library's records made from it.

Bodies are written with decimals as strings and read with every JSON fraction as a
``Decimal``: no credit, rate or cost is ever a ``float`` on either side.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from creditmeter.core.audit import Action, Actor, ActorKind, AuditEntry
from creditmeter.core.errors import AllowanceState
from creditmeter.core.grants import Grant
from creditmeter.core.keys import ApiKey, Role
from creditmeter.core.models import ModelPrice, PriceBookVersion
from creditmeter.core.notifications import NotificationPreferences
from creditmeter.core.payments import (
    AutoRecharge,
    Checkout,
    Money,
    Package,
    Purchase,
    PurchaseKind,
    PurchaseStatus,
    UiMode,
)
from creditmeter.core.plans import ALL_FEATURES, Plan
from creditmeter.core.portal import PortalSession
from creditmeter.core.pricing import Feature, PricingRule, UnknownModels
from creditmeter.core.records import (
    Account,
    Balance,
    Charge,
    CheckResult,
    GrantResult,
    Hold,
    Page,
    PoolBalance,
    Posting,
    Refused,
    Transaction,
    UsageGroup,
    UsageRecord,
)
from creditmeter.core.rerating import RerateBooking, RerateLine, RerateReport
from creditmeter.core.settings import BalanceWarning, Settings, settings_from_json
from creditmeter.core.stats import (
    AccountPage,
    AccountSummary,
    CreditsIssued,
    DailyUsage,
    FeatureStats,
    Forecast,
    Level,
    ModelStats,
    Revenue,
    SystemStats,
    TopAccount,
    UsageBreakdown,
)
from creditmeter.core.types import (
    AccountStatus,
    GrantSource,
    HoldStatus,
    PeriodKind,
    TransactionType,
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


def decimals(values: Mapping[str, object]) -> dict[str, Decimal]:
    return {unit: Decimal(str(rate)) for unit, rate in values.items()}


def page(data: Json, item: Any) -> Page[Any]:
    return Page(data=tuple(item(d) for d in data["data"]), next_cursor=data.get("next_cursor"))


def allowance(data: Json) -> AllowanceState:
    return AllowanceState(used=data["used"], limit=data["limit"], percentage=data["percentage"])


def warnings(data: list[Json]) -> tuple[BalanceWarning, ...]:
    return tuple(BalanceWarning(code=w["code"], message=w["message"]) for w in data)


def refused(data: Json | None) -> Refused | None:
    return None if data is None else Refused(code=data["code"], message=data["message"])


def account(data: Json) -> Account:
    return Account(
        id=data["id"],
        name=data["name"],
        plan=data["plan"],
        pending_plan=data["pending_plan"],
        status=AccountStatus(data["status"]),
        created_at=time(data["created_at"]),
        period_start=time(data["period_start"]),
        period_end=time(data["period_end"]),
        overdraft_limit=data["overdraft_limit"],
        metadata=data["metadata"],
    )


def balance(data: Json) -> Balance:
    return Balance(
        account_id=data["account"],
        available=data["available"],
        held=data["held"],
        debt=data["debt"],
        allowance=allowance(data["allowance"]),
        period_start=time(data["allowance"]["period_start"]),
        period_end=time(data["allowance"]["period_end"]),
        purchased_available=data["purchased"]["available"],
        pools={
            pool: PoolBalance(
                available=p["available"],
                allowance=allowance(p["allowance"]),
                unlimited=p["unlimited"],
            )
            for pool, p in data["pools"].items()
        },
        warnings=warnings(data["warnings"]),
        status=AccountStatus(data["status"]),
    )


def hold(data: Json) -> Hold:
    return Hold(
        id=data["id"],
        account_id=data["account"],
        feature=data["feature"],
        credits=data["credits"],
        reserved=data["reserved"],
        status=HoldStatus(data["status"]),
        created_at=time(data["created_at"]),
        expires_at=time(data["expires_at"]),
        usage_id=data.get("usage_id"),
        would_refuse=refused(data.get("would_refuse")),
        requested=data.get("requested"),
    )


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
    return Charge(
        usage_id=data["id"],
        account_id=data["account"],
        feature=data["feature"],
        credits=data["credits"],
        charged=data["charged"],
        debited=data["debited"],
        uncollected=data["uncollected"],
        available_after=data["available_after"],
        transaction_id=data["transaction_id"],
        hold_id=None,
        warnings=warnings(data["warnings"]),
        would_refuse=refused(data.get("would_refuse")),
    )


def check(data: Json) -> CheckResult:
    return CheckResult(
        allowed=data["allowed"],
        cost=data["cost"],
        available=data["available"],
        reason=data["reason"],
        warnings=warnings(data["warnings"]),
    )


def posting(data: Json) -> Posting:
    source = data.get("grant_source")
    return Posting(
        ledger_account=data["ledger_account"],
        amount=data["amount"],
        grant_id=data.get("grant_id"),
        grant_source=None if source is None else GrantSource(source),
    )


def transaction(data: Json) -> Transaction:
    return Transaction(
        id=data["id"],
        account_id=data["account"],
        type=TransactionType(data["type"]),
        amount=data["amount"],
        balance_before=data["balance_before"],
        balance_after=data["balance_after"],
        description=data["description"],
        created_at=time(data["created_at"]),
        postings=tuple(posting(p) for p in data["postings"]),
        usage_id=data.get("usage_id"),
        hold_id=data.get("hold_id"),
        metadata=data["metadata"],
    )


def usage_record(data: Json) -> UsageRecord:
    return UsageRecord(
        id=data["id"],
        account_id=data["account"],
        feature=data["feature"],
        feature_version=data["feature_version"],
        model=data["model"],
        member=data["member"],
        quantities=dict(data["quantities"]),  # as the library keeps them: "2.5" for a fraction
        credits=data["credits"],
        charged=data["charged"],
        debited=data["debited"],
        uncollected=data["uncollected"],
        refunded=data["refunded"],
        unlimited=data["unlimited"],
        success=data["success"],
        hold_id=data["hold_id"],
        created_at=time(data["created_at"]),
        metadata=data["metadata"],
        unknown_model=data.get("unknown_model", False),
        price_book_version=data.get("price_book_version"),
        provider_cost=None if data.get("provider_cost") is None else Decimal(data["provider_cost"]),
    )


def usage_group(data: Json) -> UsageGroup:
    return UsageGroup(
        key=data["key"], count=data["count"], credits=data["credits"], charged=data["charged"]
    )


def grant(data: Json) -> Grant:
    return Grant(
        id=data["id"],
        account_id=data["account"],
        source=GrantSource(data["source"]),
        pool=data["pool"],
        priority=data["priority"],
        amount=data["amount"],
        remaining=data["remaining"],
        held=data["held"],
        effective_at=time(data["effective_at"]),
        expires_at=optional_time(data["expires_at"]),
        created_at=time(data["created_at"]),
        period_start=optional_time(data.get("period_start")),
        reference=data.get("reference"),
        voided_at=optional_time(data.get("voided_at")),
    )


def grant_result(data: Json) -> GrantResult:
    return GrantResult(
        grant_id=data["grant_id"],
        transaction_id=data["transaction_id"],
        amount=data["amount"],
        available_after=data["available_after"],
    )


def feature(data: Json) -> Feature:
    return Feature(
        key=data["key"],
        name=data["name"],
        pool=data["pool"],
        rule=PricingRule(
            rates=decimals(data["rates"]),
            models={model: decimals(rates) for model, rates in data["models"].items()},
            multiplier=Decimal(str(data["multiplier"])),
            unknown_models=UnknownModels(data.get("unknown_models", UnknownModels.REFUSE)),
            cost_plus=data.get("cost_plus", False),
        ),
        version=data["version"],
    )


def price_book_version(data: Json) -> PriceBookVersion:
    providers = data["providers"]
    return PriceBookVersion(
        version=data["version"],
        source=data["source"],
        providers=None if providers is None else tuple(providers),
        prices=data["prices"],
        created_at=time(data["created_at"]),
    )


def model_price(data: Json) -> ModelPrice:
    return ModelPrice(
        provider=data["provider"],
        model=data["model"],
        unit=data["unit"],
        usd_per_million=Decimal(data["usd_per_million"]),
    )


def rerate_line(data: Json) -> RerateLine:
    return RerateLine(
        key=data["key"],
        records=data["records"],
        credits=data["credits"],
        rerated_credits=data["rerated_credits"],
        provider_cost=Decimal(data["provider_cost"]),
        rerated_provider_cost=Decimal(data["rerated_provider_cost"]),
    )


def rerate_report(data: Json) -> RerateReport:
    return RerateReport(
        version=data["version"],
        since=time(data["since"]),
        until=time(data["until"]),
        accounts=[rerate_line(a) for a in data["accounts"]],
        models=[rerate_line(m) for m in data["models"]],
        total=rerate_line(data["total"]),
        hand_rated=data["hand_rated"],
        unpriced=data["unpriced"],
        rated_versions={k: tuple(v) for k, v in data["rated_versions"].items()},
    )


def rerate_booking(data: Json) -> RerateBooking:
    return RerateBooking(
        id=data["id"],
        version=data["version"],
        since=time(data["since"]),
        until=time(data["until"]),
        account=data["account"],
        transactions=tuple(transaction(t) for t in data["transactions"]),
    )


def plan(data: Json) -> Plan:
    features = data["features"]
    return Plan(
        key=data["key"],
        name=data["name"],
        allowances=dict(data["allowances"]),
        features=ALL_FEATURES if features == ALL_FEATURES else frozenset(features),
        period=PeriodKind(data["period"]),
        rollover_cap=data["rollover"],
    )


def settings(data: Json) -> Settings:
    return settings_from_json(data)


def settings_version(data: Json) -> dict[str, Any]:
    return {**data, "changed_at": time(data["changed_at"])}


def api_key(data: Json) -> ApiKey:
    return ApiKey(
        id=data["id"],
        role=Role(data["role"]),
        account_id=data.get("account"),
        name=data["name"],
        prefix=data["prefix"],
        created_at=time(data["created_at"]),
        revoked_at=optional_time(data.get("revoked_at")),
    )


def notification_preferences(data: Json) -> NotificationPreferences:
    return NotificationPreferences(
        account_id=data["account_id"],
        emails=tuple(data["emails"]),
        channels={k: tuple(v) for k, v in data["channels"].items()},
        updated_at=optional_time(data["updated_at"]),
    )


def webhook_endpoint(data: Json) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=data["id"],
        url=data["url"],
        event_types=tuple(data["event_types"]),
        description=data["description"],
        enabled=data["enabled"],
        created_at=time(data["created_at"]),
        updated_at=time(data["updated_at"]),
        failures=data["failures"],
        disabled_reason=data["disabled_reason"],
        previous_secret_until=None
        if data["previous_secret_until"] is None
        else time(data["previous_secret_until"]),
    )


def delivery(endpoint_id: str) -> Callable[[Json], Delivery]:
    def read(data: Json) -> Delivery:
        return Delivery(
            id=data["id"],
            endpoint_id=endpoint_id,
            event_id=data["event_id"],
            event_type=data["event_type"],
            attempt=data["attempt"],
            status_code=data["status_code"],
            latency_ms=data["latency_ms"],
            error=data["error"],
            next_retry_at=optional_time(data["next_retry_at"]),
            created_at=time(data["created_at"]),
        )

    return read


def audit_entry(data: Json) -> AuditEntry:
    return AuditEntry(
        id=data["id"],
        created_at=time(data["created_at"]),
        actor=Actor(ActorKind(data["actor_kind"]), data.get("actor_key_id")),
        action=Action(data["action"]),
        account_id=data.get("account"),
        subject_id=data.get("subject"),
        details=data["details"],
    )


def money(data: Json) -> Money:
    return Money(data["amount"], data["currency"])


def package(data: Json) -> Package:
    return Package(
        id=data["id"],
        name=data["name"],
        credits=data["credits"],
        bonus_credits=data["bonus_credits"],
        price=money(data["price"]),
        popular=data["popular"],
        best_value=data["best_value"],
        active=data["active"],
        sort_order=data["sort_order"],
        stripe_price_id=data.get("stripe_price_id"),
    )


def checkout(data: Json) -> Checkout:
    return Checkout(
        purchase_id=data["purchase_id"],
        session_id=data["session_id"],
        ui_mode=UiMode(data["ui_mode"]),
        url=data.get("url"),
        client_secret=data.get("client_secret"),
    )


def purchase(data: Json) -> Purchase:
    return Purchase(
        id=data["id"],
        account_id=data["account"],
        package_id=data["package"],
        kind=PurchaseKind(data["kind"]),
        status=PurchaseStatus(data["status"]),
        credits=data["credits"],
        bonus_credits=data["bonus_credits"],
        price=money(data["price"]),
        provider=data["provider"],
        created_at=time(data["created_at"]),
        session_id=data.get("session_id"),
        payment_intent_id=data.get("payment_intent_id"),
        amount_paid=data["amount_paid"],
        amount_refunded=data["amount_refunded"],
        credits_clawed_back=data["credits_clawed_back"],
        clawback_debt=data["clawback_debt"],
        credits_unrecovered=data["credits_unrecovered"],
        failure_reason=data.get("failure_reason"),
        paid_at=optional_time(data.get("paid_at")),
        fulfilled_at=optional_time(data.get("fulfilled_at")),
        transaction_id=data.get("transaction_id"),
    )


def auto_recharge(data: Json) -> AutoRecharge:
    return AutoRecharge(
        account_id=data["account"],
        enabled=data["enabled"],
        threshold=data["threshold"],
        package_id=data.get("package"),
        payment_method=data.get("payment_method"),
        monthly_cap=data.get("monthly_cap"),
        consecutive_failures=data["consecutive_failures"],
        disabled_reason=data.get("disabled_reason"),
        pending_purchase_id=data.get("pending_purchase_id"),
        retry_at=optional_time(data.get("retry_at")),
    )


def payment_event(data: Json) -> dict[str, Any]:
    return {
        **data,
        "received_at": time(data["received_at"]),
        "handled_at": optional_time(data.get("handled_at")),
    }


def optional_decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def breakdown(kind: type[B], data: Json) -> B:
    """A model's or a feature's usage: dollars and the ratio are decimal strings."""
    return kind(
        key=data["key"],
        events=data["events"],
        credits=data["credits"],
        billable_usd=Decimal(data["billable_usd"]),
        provider_cost_usd=Decimal(data["provider_cost_usd"]),
        margin_usd=Decimal(data["margin_usd"]),
        margin_ratio=optional_decimal(data["margin_ratio"]),
    )


def model_stats(data: Json) -> ModelStats:
    return breakdown(ModelStats, data)


def feature_stats(data: Json) -> FeatureStats:
    return breakdown(FeatureStats, data)


def system_stats(data: Json) -> SystemStats:
    issued = data["issued"]
    return SystemStats(
        since=time(data["since"]),
        until=time(data["until"]),
        issued=CreditsIssued(
            allowance=issued["allowance"],
            purchased=issued["purchased"],
            granted=issued["granted"],
            refunded=issued["refunded"],
            voided=issued["voided"],
        ),
        consumed=data["consumed"],
        billable_credits=data["billable_credits"],
        billable_usd=Decimal(data["billable_usd"]),
        provider_cost_usd=Decimal(data["provider_cost_usd"]),
        margin_usd=Decimal(data["margin_usd"]),
        margin_ratio=optional_decimal(data["margin_ratio"]),
        events=data["events"],
        events_without_cost=data["events_without_cost"],
        revenue=tuple(
            Revenue(
                currency=r["currency"],
                purchases=r["purchases"],
                gross=r["gross"],
                refunded=r["refunded"],
            )
            for r in data["revenue"]
        ),
        accounts=data["accounts"],
        active_accounts=data["active_accounts"],
        average_balance=Decimal(data["average_balance"]),
        low_accounts=data["low_accounts"],
        critical_accounts=data["critical_accounts"],
        top_accounts=tuple(
            TopAccount(account_id=t["account"], name=t["name"], credits=t["credits"])
            for t in data["top_accounts"]
        ),
        models=tuple(model_stats(m) for m in data["models"]),
        features=tuple(feature_stats(f) for f in data["features"]),
    )


def account_summary(data: Json) -> AccountSummary:
    return AccountSummary(
        id=data["id"],
        name=data["name"],
        plan=data["plan"],
        status=AccountStatus(data["status"]),
        available=data["available"],
        level=Level(data["level"]),
        created_at=time(data["created_at"]),
        credits_used_30d=data["credits_used_30d"],
    )


def account_page(data: Json) -> AccountPage:
    return AccountPage(
        items=[account_summary(a) for a in data["data"]], next_cursor=data["next_cursor"]
    )


def daily_usage(data: Json) -> DailyUsage:
    return DailyUsage(day=date.fromisoformat(data["day"]), key=data["key"], credits=data["credits"])


def forecast(balance: Json) -> Forecast:
    """The forecast of ``GET /v1/accounts/{id}/balance``, with the balance's account and
    available credits."""
    data = balance["forecast"]
    runs_out_on = data["runs_out_on"]
    return Forecast(
        account_id=balance["account"],
        available=balance["available"],
        days=data["days"],
        consumed=data["consumed"],
        burn_per_day=Decimal(data["burn_per_day"]),
        runs_out_on=None if runs_out_on is None else date.fromisoformat(runs_out_on),
    )


def portal_session(data: Json) -> tuple[PortalSession, str]:
    """The session of ``POST /v1/accounts/{id}/portal-sessions`` and its link's token, the
    last segment of its ``url``."""
    session = PortalSession(
        id=data["id"],
        account_id=data["account"],
        return_url=data["return_url"],
        created_at=time(data["created_at"]),
        expires_at=time(data["expires_at"]),
    )
    return session, data["url"].rsplit("/", 1)[1]
