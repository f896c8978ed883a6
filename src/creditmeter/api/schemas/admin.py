"""System settings with their history, API keys and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
from pydantic.json_schema import SkipJsonSchema

from creditmeter.api.schemas.catalog import Rate
from creditmeter.api.schemas.common import NO_NUL, Body, Credits, Identifier, Text, Whole
from creditmeter.core.audit import AuditEntry
from creditmeter.core.keys import ApiKey
from creditmeter.core.settings import Settings, settings_to_json

Seconds = Annotated[StrictInt, Field(ge=1, le=10**9, description="Seconds"), Whole]
Percentage = Annotated[StrictInt, Field(ge=1, le=100, description="A percentage"), Whole]
Url = Annotated[str, Field(min_length=1, max_length=2000, pattern=NO_NUL)]
Unset = SkipJsonSchema[None]
"""Not in the schema: a setting left out is not changed, and only ``upgrade_url`` may be
set to null."""
EnforcementMode = Literal["enforce", "observe", "off"]
RefundShortfallMode = Literal["debt", "adjustment"]
"""The values of ``RefundShortfall``."""
MaxFailures = Annotated[StrictInt, Field(ge=1, le=1000, description="Failures in a row"), Whole]
Delay = Annotated[StrictInt, Field(ge=0, le=10**9, description="Seconds"), Whole]
Days = Annotated[StrictInt, Field(ge=0, le=3650, description="Days"), Whole]


class SettingsOut(BaseModel):
    credits_per_usd: str = Field(description="A decimal string.")
    default_multiplier: str = Field(description="A decimal string.")
    welcome_bonus: int
    low_balance_threshold: int
    critical_balance_threshold: int
    allowance_alerts: list[int] = Field(description="Percentages of the allowance used.")
    minimum_purchase: int
    enforcement: str = Field(
        description="`enforce` refuses, `observe` allows and reports what it would have "
        "refused, `off` allows."
    )
    default_hold_ttl_seconds: int
    max_hold_ttl_seconds: int
    upgrade_url: str | None
    refund_shortfall: str = Field(
        description="What a refund's clawback does with credits already spent: "
        "`adjustment` takes them from the account's other credits (what those cannot cover "
        "is debt, the balance below zero); `debt` records them on the purchase as owed and "
        "leaves the balance alone."
    )
    auto_recharge_max_failures: int = Field(
        description="Failed auto-recharges in a row after which auto-recharge is turned off."
    )
    auto_recharge_retry_seconds: int = Field(
        description="How long after a failed auto-recharge the next may start."
    )
    grant_expiring_days: int = Field(
        description="Days before a grant expires that `grant.expiring` is sent; 0 never."
    )

    @classmethod
    def of(cls, s: Settings) -> SettingsOut:
        return cls(**settings_to_json(s))


class SettingsChange(Body):
    """The settings to change, and only those; a setting left out keeps its value."""

    credits_per_usd: Rate | Unset = None
    default_multiplier: Rate | Unset = None
    welcome_bonus: Credits | Unset = None
    low_balance_threshold: Credits | Unset = None
    critical_balance_threshold: Credits | Unset = None
    allowance_alerts: list[Percentage] | Unset = None
    minimum_purchase: Credits | Unset = None
    enforcement: EnforcementMode | Unset = None
    default_hold_ttl_seconds: Seconds | Unset = None
    max_hold_ttl_seconds: Seconds | Unset = None
    upgrade_url: Url | None = Field(default=None, description="null removes it.")
    refund_shortfall: RefundShortfallMode | Unset = None
    auto_recharge_max_failures: MaxFailures | Unset = None
    auto_recharge_retry_seconds: Delay | Unset = None
    grant_expiring_days: Days | Unset = None

    model_config = ConfigDict(
        json_schema_extra={
            "minProperties": 1,
            "examples": [{"welcome_bonus": 500, "default_multiplier": "1.2"}],
        }
    )

    @model_validator(mode="after")
    def _something_changes(self) -> SettingsChange:
        if not self.model_fields_set:
            raise ValueError("name at least one setting to change")
        nulls = sorted(
            name
            for name in self.model_fields_set
            if getattr(self, name) is None and name != "upgrade_url"
        )
        if nulls:
            raise ValueError(f"only upgrade_url may be null, not {', '.join(nulls)}")
        return self

    def changes(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


class SettingsVersionOut(BaseModel):
    version: int
    values: dict[str, Any] = Field(description="Every setting as it was from this version on.")
    changes: dict[str, Any] = Field(description="What this version changed.")
    changed_by: str = Field(description="The API key that changed it: `<id> (<name>)`.")
    changed_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> SettingsVersionOut:
        return cls(
            version=row["version"],
            values=row["values"],
            changes=row["changes"],
            changed_by=row["changed_by"],
            changed_at=row["changed_at"],
        )


class AccountKeyCreate(Body):
    """A key of one account: its balance, history and usage, nothing else."""

    role: Literal["account"]
    account: Identifier
    name: Text | None = Field(default=None, description="What it is for; default: the role.")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"role": "account", "account": "acme", "name": "Acme"}]}
    )


class StaffKeyCreate(Body):
    """A key of the host app's backend (`service`) or of the operator's staff."""

    role: Literal["service", "admin", "superadmin"]
    account: None = Field(default=None, description="Staff keys have no account.")
    name: Text | None = Field(default=None, description="What it is for; default: the role.")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"role": "service", "name": "production backend"}]}
    )


ApiKeyCreate = Annotated[AccountKeyCreate | StaffKeyCreate, Field(discriminator="role")]


class ApiKeyOut(BaseModel):
    id: str
    role: str
    account: str | None
    name: str
    prefix: str = Field(description="The first characters of the secret, to recognise it.")
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, k: ApiKey) -> ApiKeyOut:
        return cls(
            id=k.id,
            role=k.role.value,
            account=k.account_id,
            name=k.name,
            prefix=k.prefix,
            created_at=k.created_at,
            revoked_at=k.revoked_at,
        )


class ApiKeyCreated(BaseModel):
    id: str
    role: str
    account: str | None
    name: str
    prefix: str
    created_at: datetime
    key: str = Field(description="The secret: shown here once, stored only as a digest.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "key_01J…",
                    "role": "service",
                    "account": None,
                    "name": "production backend",
                    "prefix": "cm_Ab3dE9",
                    "created_at": "2026-03-10T12:00:00Z",
                    "key": "cm_Ab3dE9…",
                }
            ]
        }
    )

    @classmethod
    def of(cls, k: ApiKey, secret: str) -> ApiKeyCreated:
        return cls(
            id=k.id,
            role=k.role.value,
            account=k.account_id,
            name=k.name,
            prefix=k.prefix,
            created_at=k.created_at,
            key=secret,
        )


class AuditEntryOut(BaseModel):
    id: str
    created_at: datetime
    actor_kind: str = Field(
        description="`api_key` (a stored key), `admin_key_env` (the key of "
        "`CREDITMETER_ADMIN_KEY`), `library`, `cli` or `system` (creditmeter itself, "
        "following a rule)."
    )
    actor_key_id: str | None = Field(description="The stored key that acted, if one did.")
    action: str
    account: str | None = Field(description="The account acted on, if any.")
    subject: str | None = Field(
        description="What was acted on: a grant, transaction, purchase, key, feature, plan, "
        "package, account or settings version."
    )
    details: dict[str, Any]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "aud_01J…",
                    "created_at": "2026-03-10T12:00:00Z",
                    "actor_kind": "api_key",
                    "actor_key_id": "key_01J…",
                    "action": "grant.created",
                    "account": "acme",
                    "subject": "grt_01J…",
                    "details": {
                        "amount": 5000,
                        "source": "promotional",
                        "pool": "*",
                        "priority": 20,
                        "effective_at": "2026-03-10T12:00:00+00:00",
                        "expires_at": None,
                        "reason": "launch week",
                        "transaction": "txn_01J…",
                    },
                }
            ]
        }
    )

    @classmethod
    def of(cls, e: AuditEntry) -> AuditEntryOut:
        return cls(
            id=e.id,
            created_at=e.created_at,
            actor_kind=e.actor.kind.value,
            actor_key_id=e.actor.key_id,
            action=e.action.value,
            account=e.account_id,
            subject=e.subject_id,
            details=dict(e.details),
        )
