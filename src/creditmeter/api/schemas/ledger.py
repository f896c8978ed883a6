"""The ledger, usage, grants and refunds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
)

from creditmeter.api.schemas.common import (
    NO_NUL,
    Body,
    Identifier,
    PositiveCredits,
    Text,
    Whole,
)
from creditmeter.core import records
from creditmeter.core.grants import Grant
from creditmeter.core.identifiers import IDENTIFIER_PATTERN

POOL_PATTERN = rf"^(\*|{IDENTIFIER_PATTERN[1:-1]})$"

Reason = Annotated[str, Field(min_length=1, max_length=1000, pattern=NO_NUL)]
Pool = Annotated[
    str,
    Field(pattern=POOL_PATTERN, description="A pool name, or `*` for every pool.", examples=["*"]),
]
Priority = Annotated[
    StrictInt, Field(ge=0, le=2**31 - 1, description="Lower is drawn first."), Whole
]


def _text_only(value: object) -> object:
    """A JSON body carries a time as an ISO 8601 string; a number is not taken for one."""
    if not isinstance(value, str | datetime):
        raise ValueError("a time is an ISO 8601 string with a timezone")
    return value


def _in_utc(value: datetime) -> datetime:
    """The time in UTC, which the store keeps; a time that has none (year 1 at +01:00) is
    refused."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range in UTC") from None


Time = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""An ISO 8601 time with a timezone, in a query."""

Timestamp = Annotated[
    AwareDatetime,
    Field(strict=False, examples=["2026-04-01T00:00:00Z"]),
    BeforeValidator(_text_only),
    AfterValidator(_in_utc),
]
"""An ISO 8601 time with a timezone, in a request body."""

ManualSource = Literal["admin", "bonus", "promotional", "purchase", "auto_recharge", "refund"]


class PostingOut(BaseModel):
    ledger_account: str = Field(description="`account:<id>` or a system account.")
    amount: int = Field(description="Into (positive) or out of (negative) the ledger account.")
    grant_id: str | None
    grant_source: str | None

    @classmethod
    def of(cls, p: records.Posting) -> PostingOut:
        return cls(
            ledger_account=p.ledger_account,
            amount=p.amount,
            grant_id=p.grant_id,
            grant_source=None if p.grant_source is None else p.grant_source.value,
        )


class TransactionOut(BaseModel):
    id: str
    account: str
    type: str
    amount: int = Field(description="The change of the account's available credits.")
    balance_before: int
    balance_after: int
    postings: list[PostingOut]
    description: str
    created_at: datetime
    metadata: dict[str, Any]
    usage_id: str | None
    hold_id: str | None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "txn_01J…",
                    "account": "acme",
                    "type": "usage",
                    "amount": -5000,
                    "balance_before": 20000,
                    "balance_after": 15000,
                    "postings": [
                        {
                            "ledger_account": "account:acme",
                            "amount": -5000,
                            "grant_id": "grant_01J…",
                            "grant_source": "allowance",
                        },
                        {
                            "ledger_account": "consumption",
                            "amount": 5000,
                            "grant_id": None,
                            "grant_source": None,
                        },
                    ],
                    "description": "llm.chat: 5,000 credits",
                    "created_at": "2026-03-10T12:00:00Z",
                    "metadata": {},
                    "usage_id": "use_01J…",
                    "hold_id": None,
                }
            ]
        }
    )

    @classmethod
    def of(cls, t: records.Transaction) -> TransactionOut:
        return cls(
            id=t.id,
            account=t.account_id,
            type=t.type.value,
            amount=t.amount,
            balance_before=t.balance_before,
            balance_after=t.balance_after,
            postings=[PostingOut.of(p) for p in t.postings],
            description=t.description,
            created_at=t.created_at,
            metadata=dict(t.metadata),
            usage_id=t.usage_id,
            hold_id=t.hold_id,
        )


class UsageOut(BaseModel):
    id: str
    account: str
    feature: str
    feature_version: int = Field(description="The version of the price it was rated with.")
    model: str | None
    member: str | None
    quantities: dict[str, int | str] = Field(
        description="What the operation consumed, by unit; fractions are decimal strings."
    )
    credits: int = Field(description="What the usage cost.")
    charged: int = Field(description="Drawn from grants.")
    debited: int = Field(description="Taken on as debt (an overdraft).")
    uncollected: int = Field(description="Neither charged nor debited (enforcement off).")
    refunded: int
    unlimited: bool = Field(description="Covered by an unlimited allowance: nothing drawn.")
    success: bool
    unknown_model: bool = Field(
        description="Priced at the feature's default rates: it has no rates for the model."
    )
    provider_cost: str | None = Field(
        description="What it cost at the provider, in USD, a decimal string: as given, or "
        "computed for a cost-plus feature."
    )
    price_book_version: int | None = Field(
        description="A cost-plus usage's: the price-book version of its provider cost."
    )
    hold_id: str | None
    created_at: datetime
    metadata: dict[str, Any]

    @classmethod
    def of(cls, u: records.UsageRecord) -> UsageOut:
        return cls(
            id=u.id,
            account=u.account_id,
            feature=u.feature,
            feature_version=u.feature_version,
            model=u.model,
            member=u.member,
            quantities={
                unit: q if isinstance(q, int) else str(q) for unit, q in u.quantities.items()
            },
            credits=u.credits,
            charged=u.charged,
            debited=u.debited,
            uncollected=u.uncollected,
            refunded=u.refunded,
            unlimited=u.unlimited,
            success=u.success,
            unknown_model=u.unknown_model,
            provider_cost=None if u.provider_cost is None else str(u.provider_cost),
            price_book_version=u.price_book_version,
            hold_id=u.hold_id,
            created_at=u.created_at,
            metadata=dict(u.metadata),
        )


class UsageGroupOut(BaseModel):
    key: str = Field(
        description="The day, week (its Monday) or month (its first day) as YYYY-MM-DD, or "
        "the feature, model or member (empty: none)."
    )
    count: int
    credits: int
    charged: int = Field(description="Charged and debited, less what was refunded.")

    @classmethod
    def of(cls, g: records.UsageGroup) -> UsageGroupOut:
        return cls(key=g.key, count=g.count, credits=g.credits, charged=g.charged)


class UsageSummaryOut(BaseModel):
    data: list[UsageGroupOut]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "data": [
                        {"key": "2026-03-09", "count": 12, "credits": 48000, "charged": 48000},
                        {"key": "2026-03-10", "count": 3, "credits": 9000, "charged": 7000},
                    ]
                }
            ]
        }
    )


class GrantOut(BaseModel):
    id: str
    account: str
    source: str
    pool: str = Field(description="The pool it pays for; `*`: every pool.")
    priority: int = Field(description="Lower is drawn first.")
    amount: int
    remaining: int
    held: int = Field(description="Reserved by pending holds.")
    effective_at: datetime
    expires_at: datetime | None
    created_at: datetime
    period_start: datetime | None
    reference: str | None
    voided_at: datetime | None = Field(description="When an admin voided it, if one did.")

    @classmethod
    def of(cls, g: Grant) -> GrantOut:
        return cls(
            id=g.id,
            account=g.account_id,
            source=g.source.value,
            pool=g.pool,
            priority=g.priority,
            amount=g.amount,
            remaining=g.remaining,
            held=g.held,
            effective_at=g.effective_at,
            expires_at=g.expires_at,
            created_at=g.created_at,
            period_start=g.period_start,
            reference=g.reference,
            voided_at=g.voided_at,
        )


class GrantCreate(Body):
    amount: PositiveCredits
    source: ManualSource = Field(
        default="admin", description="Allowances come from the plan, never by hand."
    )
    priority: Priority | None = Field(
        default=None, description="Lower is drawn first; by default the source's priority."
    )
    pool: Pool | None = Field(default=None, description="Default `*`: every pool.")
    expires_at: Timestamp | None = Field(
        default=None, description="After `effective_at`; default: never."
    )
    effective_at: Timestamp | None = Field(default=None, description="Default: now.")
    reason: Reason | None = Field(default=None, description="Becomes the ledger description.")
    reference: Text | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "amount": 5000,
                    "source": "promotional",
                    "expires_at": "2026-06-30T00:00:00Z",
                    "reason": "launch week",
                }
            ]
        }
    )


class GrantResultOut(BaseModel):
    account: str
    grant_id: str
    transaction_id: str
    amount: int
    available_after: int

    @classmethod
    def of(cls, account: str, r: records.GrantResult) -> GrantResultOut:
        return cls(
            account=account,
            grant_id=r.grant_id,
            transaction_id=r.transaction_id,
            amount=r.amount,
            available_after=r.available_after,
        )


class RefundOfUsage(Body):
    """A usage's credits go back to the grants it drew from."""

    usage_id: Identifier
    reason: Reason | None = None

    model_config = ConfigDict(json_schema_extra={"examples": [{"usage_id": "use_01J…"}]})


class RefundOfCredits(Body):
    """An amount of credits comes back as a new refund grant."""

    amount: PositiveCredits
    reason: Reason | None = None

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"amount": 2500, "reason": "outage credit"}]}
    )


RefundCreate = RefundOfUsage | RefundOfCredits


class GrantVoid(Body):
    """Take the credits left in a grant away."""

    reason: Reason
    held: Literal["refuse", "release"] = Field(
        default="refuse",
        description="What to do when pending holds reserve credits of the grant: `refuse` "
        "(409 `grant_held`, naming the holds) or `release` those holds first.",
    )

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "promotion sent by mistake"}]}
    )
