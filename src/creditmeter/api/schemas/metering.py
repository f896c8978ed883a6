"""Holds, usage, batches of usage and price checks."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    create_model,
)
from pydantic.config import JsonDict

from creditmeter.api.schemas.accounts import WarningOut, warnings_out
from creditmeter.api.schemas.common import (
    Body,
    Credits,
    ErrorDetail,
    Identifier,
    Metadata,
    Text,
    Whole,
    whole_number,
)
from creditmeter.core import records
from creditmeter.core.usage import UsageEvent as ChargeEvent

MAX_BATCH = 1000
TtlSeconds = Annotated[StrictInt, Field(ge=1, le=86_400, description="Seconds"), Whole]

MAX_QUANTITY = 10**18
DECIMAL = r"^[0-9]{1,18}(\.[0-9]{1,12})?$"
ProviderCost = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{1,10}(\.[0-9]{1,10})?$",
        description="What the provider charged for the operation, in USD, as a decimal "
        'string such as `"0.0125"` (up to 10 digits either side of the point), for margin '
        "reports.",
    ),
]


def _quantity(value: object) -> int | str:
    """An integer ≥ 0 (a JSON number without a fraction, ``2.0`` too, as for credits) or a
    decimal string; anything else is refused with one message."""
    value = whole_number(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_QUANTITY:
        return value
    if isinstance(value, str) and re.fullmatch(DECIMAL, value):
        return value
    raise ValueError('a quantity is an integer from 0 to 10^18 or a decimal string such as "2.5"')


Quantity = Annotated[
    int | str,
    PlainValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_QUANTITY},
                {"type": "string", "pattern": DECIMAL},
            ],
            "description": 'An integer ≥ 0 or a decimal string such as `"2.5"` (up to 18 '
            "digits before the point and 12 after, no exponent); never a fraction as a JSON "
            "number.",
        }
    ),
]
Unit = Annotated[str, Field(min_length=1, max_length=64)]
Quantities = Annotated[
    dict[Unit, Quantity],
    Field(
        max_length=64,
        description='Quantities by unit, each an integer or a decimal string: `{"input_tokens": '
        '1000, "output_tokens": 500}`. Units the feature does not price are refused (422).',
    ),
]

FEATURE = "The priced feature, such as `llm.chat`."
CREDITS = "Credits as they are, instead of pricing quantities."
MODEL = "The model used; selects the feature's per-model rates."
CONSUMED = "The quantities consumed."
MEMBER = "The member of the account who used it, for attribution."

LLM_USAGE: JsonDict = {"input_tokens": 1000, "output_tokens": 500}


class HoldCreate(Body):
    """Reserve the price of an estimate (or ``credits``) for one operation; with neither,
    one call."""

    account: Identifier
    feature: Identifier = Field(description=FEATURE)
    estimate: Quantities | None = Field(default=None, description="The quantities expected.")
    credits: Credits | None = Field(default=None, description=CREDITS)
    model: Text | None = Field(default=None, description=MODEL)
    member: Identifier | None = Field(default=None, description=MEMBER)
    ttl_seconds: TtlSeconds | None = Field(
        default=None,
        description="Release the hold unless it is settled within this many seconds "
        "(by default the `default_hold_ttl_seconds` setting).",
    )
    metadata: Metadata = Field(default_factory=dict)
    balancing: bool = Field(
        default=False,
        description="Reserve what the account has up to the estimate instead of refusing "
        "(402 only when it has nothing); the hold's `credits` then say what it got.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "account": "acme",
                    "feature": "llm.chat",
                    "estimate": LLM_USAGE,
                    "model": "gpt-4o",
                    "member": "ann",
                    "ttl_seconds": 300,
                }
            ]
        }
    )

    @property
    def ttl(self) -> timedelta | None:
        return None if self.ttl_seconds is None else timedelta(seconds=self.ttl_seconds)


class HoldSettle(Body):
    """The actual usage (or ``credits``); with neither, the estimate was right."""

    usage: Quantities | None = Field(default=None, description=CONSUMED)
    credits: Credits | None = Field(default=None, description=CREDITS)
    model: Text | None = Field(default=None, description=MODEL)
    member: Identifier | None = Field(default=None, description=MEMBER)
    success: StrictBool = Field(
        default=True,
        description="false: the operation failed; the usage is recorded at no cost.",
    )
    metadata: Metadata = Field(default_factory=dict)
    provider_cost: ProviderCost | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"usage": {"input_tokens": 1200, "output_tokens": 350}, "success": True}]
        }
    )


class UsageBody(Body):
    """A usage as ``POST /v1/usage`` takes it: the fields of the library's
    :class:`~creditmeter.core.usage.UsageEvent`, made by :func:`_usage_model`."""

    def event(self, idempotency_key: str | None = None) -> ChargeEvent:
        """The usage to charge: a batch event brings its own key."""
        given = {"idempotency_key": idempotency_key, **dict(self)}
        return ChargeEvent(
            account_id=given.pop("account"),
            provider_cost=decimal_or_none(given.pop("provider_cost")),
            **given,
        )


_USAGE_OVER_HTTP: dict[str, tuple[str, Any, Any]] = {
    "account_id": ("account", Identifier, ...),
    "feature": ("feature", Identifier, Field(description=FEATURE)),
    "usage": ("usage", Quantities | None, Field(default=None, description=CONSUMED)),
    "credits": ("credits", Credits | None, Field(default=None, description=CREDITS)),
    "model": ("model", Text | None, Field(default=None, description=MODEL)),
    "member": ("member", Identifier | None, Field(default=None, description=MEMBER)),
    "metadata": ("metadata", Metadata, Field(default_factory=dict)),
    "provider_cost": ("provider_cost", ProviderCost | None, None),
}
"""The HTTP name, type and field of a usage's fields that HTTP spells its own way."""


def _usage_model(name: str, doc: str, examples: list[JsonDict]) -> type[UsageBody]:
    """The body of a usage over HTTP, a field for each of the value object's (but its
    idempotency key, a header): as :data:`_USAGE_OVER_HTTP` spells it, else by the value
    object's type and absent by default."""
    types = get_type_hints(ChargeEvent)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(ChargeEvent):
        if field.name == "idempotency_key":
            continue
        spelled = _USAGE_OVER_HTTP.get(field.name)
        if spelled is None:
            fields[field.name] = (types[field.name], None)
        else:
            fields[spelled[0]] = spelled[1:]
    return create_model(
        name,
        __base__=UsageBody,
        __doc__=doc,
        __module__=__name__,
        __cls_kwargs__={"json_schema_extra": {"examples": examples}},
        **fields,
    )


if TYPE_CHECKING:
    UsageCreate = UsageBody
else:
    UsageCreate = _usage_model(
        "UsageCreate",
        """A usage charged in one step: ``usage`` quantities priced by the feature's rule, or
    ``credits`` as they are; with neither, one call.""",
        [
            {
                "account": "acme",
                "feature": "llm.chat",
                "usage": LLM_USAGE,
                "model": "gpt-4o",
                "member": "ann",
                "metadata": {"conversation": "c_42"},
            }
        ],
    )


class UsageEvent(UsageCreate):
    """One event of a batch: a one-shot usage with its own idempotency key."""

    idempotency_key: Text = Field(
        description="The event's own key: a replayed event returns its first result and "
        "changes nothing; the same key with another event is a 409 for that event."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "account": "acme",
                    "feature": "image.generate",
                    "usage": {"images_1024x1024": 2},
                    "idempotency_key": "evt_1",
                }
            ]
        }
    )


class UsageBatch(Body):
    events: list[UsageEvent] = Field(min_length=1, max_length=MAX_BATCH)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "account": "acme",
                            "feature": "llm.chat",
                            "usage": LLM_USAGE,
                            "model": "gpt-4o",
                            "idempotency_key": "evt_1",
                        },
                        {"account": "globex", "feature": "csv_export", "idempotency_key": "evt_2"},
                    ]
                }
            ]
        }
    )


class CheckRequest(Body):
    """A usage to price and check against the account now; ``credits`` as they are."""

    feature: Identifier = Field(description=FEATURE)
    usage: Quantities | None = Field(default=None, description="The quantities to price.")
    credits: Credits | None = Field(default=None, description=CREDITS)
    model: Text | None = Field(default=None, description=MODEL)

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"feature": "llm.chat", "usage": LLM_USAGE}]}
    )


class RefusedOut(BaseModel):
    """What enforcement would have refused, when enforcement is `observe`."""

    code: str
    message: str


def refused_out(refused: records.Refused | None) -> RefusedOut | None:
    return None if refused is None else RefusedOut(code=refused.code, message=refused.message)


class HoldOut(BaseModel):
    id: str
    account: str
    feature: str
    credits: int = Field(
        description="The price of the estimate; of what a balancing hold got, if less."
    )
    reserved: int = Field(description="Credits reserved against grants (0 when unlimited).")
    status: str = Field(description="`pending`, `settled`, `released` or `expired`.")
    created_at: datetime
    expires_at: datetime
    usage_id: str | None = Field(description="The usage it was settled with.")
    would_refuse: RefusedOut | None
    requested: int | None = Field(
        description="What a balancing authorize asked for when it got less (`credits`)."
    )

    @classmethod
    def of(cls, h: records.Hold) -> HoldOut:
        return cls(
            id=h.id,
            account=h.account_id,
            feature=h.feature,
            credits=h.credits,
            reserved=h.reserved,
            status=h.status.value,
            created_at=h.created_at,
            expires_at=h.expires_at,
            usage_id=h.usage_id,
            would_refuse=refused_out(h.would_refuse),
            requested=h.requested,
        )


class ChargedOut(BaseModel):
    credits: int = Field(description="The price of the usage.")
    charged: int = Field(description="Credits drawn from grants.")
    debited: int = Field(description="Credits taken on as debt, within the overdraft limit.")
    uncollected: int = Field(description="Credits neither drawn nor taken on as debt.")
    available_after: int
    transaction_id: str | None = Field(description="The ledger transaction of the usage.")
    warnings: list[WarningOut]


class SettleOut(ChargedOut):
    hold: HoldOut
    usage_id: str

    @classmethod
    def of(cls, c: records.Charge, hold: records.Hold) -> SettleOut:
        return cls(hold=HoldOut.of(hold), usage_id=c.usage_id, **_charged(c))


class UsageOut(ChargedOut):
    id: str = Field(description="The usage record's id.")
    account: str
    feature: str
    would_refuse: RefusedOut | None

    @classmethod
    def of(cls, c: records.Charge) -> UsageOut:
        return cls.model_validate(usage_data(c))


def usage_data(c: records.Charge) -> dict[str, Any]:
    """The ``UsageOut`` of a charge as the plain data it serializes to, its fields in the
    model's order. A batch answers up to 1,000 of them serialized as they are: a charge's
    values already have the types the model declares, so validating them only spends CPU."""
    return {
        **_charged(c),
        "id": c.usage_id,
        "account": c.account_id,
        "feature": c.feature,
        "would_refuse": None
        if c.would_refuse is None
        else {"code": c.would_refuse.code, "message": c.would_refuse.message},
    }


def _charged(c: records.Charge) -> dict[str, Any]:
    return {
        "credits": c.credits,
        "charged": c.charged,
        "debited": c.debited,
        "uncollected": c.uncollected,
        "available_after": c.available_after,
        "transaction_id": c.transaction_id,
        "warnings": [{"code": w.code, "message": w.message} for w in c.warnings],
    }


class BatchUsageOut(UsageOut):
    """An event charged: the response `POST /v1/usage` would have given."""

    index: int
    status: int = Field(description="The HTTP status the event would have had alone: 200.")


class BatchErrorOut(BaseModel):
    """An event refused or invalid: the error `POST /v1/usage` would have answered with."""

    index: int
    status: int = Field(description="The HTTP status the event would have had alone.")
    error: ErrorDetail


def batch_usage_data(index: int, c: records.Charge) -> dict[str, Any]:
    """The ``BatchUsageOut`` of an event charged, as plain data (see ``usage_data``)."""
    return {**usage_data(c), "index": index, "status": 200}


def batch_error_data(index: int, status: int, error: dict[str, Any]) -> dict[str, Any]:
    """The ``BatchErrorOut`` of an event refused, as plain data: ``error`` is what the
    body of the event's answer alone would have had under ``error``."""
    return {"index": index, "status": status, "error": error}


class BatchOut(BaseModel):
    results: list[BatchUsageOut | BatchErrorOut] = Field(
        description="One result per event, in the order of the events."
    )


class CheckOut(BaseModel):
    allowed: bool
    cost: int
    available: int
    reason: str | None = Field(description="Why it would be refused: `insufficient_credits` …")
    warnings: list[WarningOut]

    @classmethod
    def of(cls, r: records.CheckResult) -> CheckOut:
        return cls(
            allowed=r.allowed,
            cost=r.cost,
            available=r.available,
            reason=r.reason,
            warnings=warnings_out(r.warnings),
        )


def decimal_or_none(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
