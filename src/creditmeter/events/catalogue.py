"""The event catalogue: the shape of each event's ``data``, one model per event type.

docs/notifications.md shows each model's JSON schema (:func:`schema`) and an example;
tests check that the page documents every type of :data:`EVENT_TYPES` with exactly this
schema, that its examples validate, and that the events creditmeter queues do too.
Credits are integers; times are ISO 8601 in UTC.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from creditmeter.core.webhooks import EVENT_TYPES

Credits = StrictInt


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Data(_Shape):
    account_id: StrictStr = Field(description="The account it happened to.")


# balance.low, balance.critical: the available balance fell to or below the threshold;
# balance.recovered: it rose above the low threshold plus a tenth.
class BalanceCrossed(_Data):
    available: Credits = Field(description="The available balance after the change.")
    threshold: Credits = Field(description="The threshold crossed (the low one to recover).")


class AllowanceThreshold(_Data):
    percentage: StrictInt = Field(description="The percentage of the allowance reached.")
    used: Credits = Field(description="Credits of the period's allowance used.")
    limit: Credits = Field(description="The period's allowance.")
    period_start: AwareDatetime
    period_end: AwareDatetime


class PurchaseFulfilled(_Data):
    purchase_id: StrictStr
    credits: Credits = Field(description="Credits added, bonus included.")
    amount: StrictInt = Field(description="The amount paid, in the currency's minor units.")
    currency: StrictStr = Field(description="ISO 4217, lower case.")


class PurchaseFailed(_Data):
    purchase_id: StrictStr
    reason: StrictStr


class PurchaseRefunded(_Data):
    purchase_id: StrictStr
    credits: Credits = Field(description="Credits taken back now.")
    debt: Credits = Field(description="What the account owes for credits already spent.")
    unrecovered: Credits = Field(description="Spent credits recorded as owed on the purchase.")


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    amount: StrictInt = Field(description="In the currency's minor units.")
    currency: StrictStr = Field(description="ISO 4217, lower case.")


class RechargeSucceeded(_Data):
    purchase_id: StrictStr
    credits: Credits
    price: Price


class RechargeFailed(_Data):
    purchase_id: StrictStr
    reason: StrictStr
    consecutive_failures: StrictInt
    auto_recharge_disabled: StrictBool = Field(
        description="Whether this failure turned auto-recharge off."
    )


class AutoRechargeDisabled(_Data):
    purchase_id: StrictStr = Field(description="The last failed recharge.")
    reason: StrictStr


class HoldExpired(_Data):
    hold_id: StrictStr
    credits: Credits = Field(description="Credits the hold gave back.")


class AccountSuspended(_Data):
    status: Literal["suspended", "blocked"]
    previous: Literal["active", "suspended", "blocked"]


class AccountReactivated(_Data):
    status: Literal["active"]
    previous: Literal["suspended", "blocked"]


class GrantCreated(_Data):
    grant_id: StrictStr
    amount: Credits
    source: StrictStr = Field(description="admin, bonus, promotional, purchase …")
    pool: StrictStr
    effective_at: AwareDatetime
    expires_at: AwareDatetime | None
    reason: StrictStr | None


class GrantExpiring(_Data):
    grant_id: StrictStr
    source: StrictStr
    pool: StrictStr
    remaining: Credits = Field(description="Credits left in it when the warning was queued.")
    expires_at: AwareDatetime


class PeriodRenewed(_Data):
    plan: StrictStr | None
    period_start: AwareDatetime
    period_end: AwareDatetime
    allowance: Credits = Field(description="Credits of allowance issued for the period.")


# For the operators: about an endpoint, not an account.
class WebhookEndpointDisabled(_Shape):
    endpoint_id: StrictStr
    url: StrictStr
    failures: StrictInt = Field(description="Failed deliveries in a row.")
    reason: StrictStr


DATA: dict[str, type[_Shape]] = {
    "balance.low": BalanceCrossed,
    "balance.critical": BalanceCrossed,
    "balance.recovered": BalanceCrossed,
    "allowance.threshold": AllowanceThreshold,
    "purchase.fulfilled": PurchaseFulfilled,
    "purchase.failed": PurchaseFailed,
    "purchase.refunded": PurchaseRefunded,
    "recharge.succeeded": RechargeSucceeded,
    "recharge.failed": RechargeFailed,
    "auto_recharge.disabled": AutoRechargeDisabled,
    "hold.expired": HoldExpired,
    "account.suspended": AccountSuspended,
    "account.reactivated": AccountReactivated,
    "grant.created": GrantCreated,
    "grant.expiring": GrantExpiring,
    "period.renewed": PeriodRenewed,
    "webhook_endpoint.disabled": WebhookEndpointDisabled,
}
assert set(DATA) == EVENT_TYPES, "every event type has its model, and only those"


def validate(event_type: str, data: str | bytes) -> _Shape:
    """``data`` (JSON) as the model of ``event_type``; ``ValidationError`` if it is not."""
    return DATA[event_type].model_validate_json(data)


def schema(event_type: str) -> dict[str, Any]:
    """The JSON schema of ``event_type``'s ``data``, without pydantic's titles."""
    untitled: dict[str, Any] = _untitled(DATA[event_type].model_json_schema())
    return untitled


def _untitled(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _untitled(v) for k, v in value.items() if not (k == "title" and isinstance(v, str))
        }
    if isinstance(value, list):
        return [_untitled(v) for v in value]
    return value
