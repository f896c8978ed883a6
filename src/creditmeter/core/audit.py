"""The audit log: who changed credits, prices, plans, settings or keys, and what they did.

An entry is written in the same transaction as the change it records, so it exists
exactly when the change was committed. The hot path (holds, settles, charges) is the
ledger's to record, not the audit log's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from creditmeter.core.types import AccountId


class ActorKind(StrEnum):
    API_KEY = "api_key"
    """A key stored in the database (``POST /v1/api-keys``, ``creditmeter api-keys``)."""
    ADMIN_KEY_ENV = "admin_key_env"
    """The superadmin key a server is given in ``CREDITMETER_ADMIN_KEY``."""
    LIBRARY = "library"
    """The embedded library, called by the app that embeds it."""
    CLI = "cli"
    """The ``creditmeter`` command, run by someone with the database URL."""
    SYSTEM = "system"
    """creditmeter itself, following a rule (a webhook endpoint disabled after failures)."""


@dataclass(frozen=True)
class Actor:
    """Who acted: a stored key (by its id) or one of the ways in that need no key."""

    kind: ActorKind
    key_id: str | None = None

    def __post_init__(self) -> None:
        if (self.kind is ActorKind.API_KEY) != (self.key_id is not None):
            raise ValueError("an API key actor names its key; other actors name none")


LIBRARY: Final = Actor(ActorKind.LIBRARY)
CLI: Final = Actor(ActorKind.CLI)
ADMIN_KEY_ENV: Final = Actor(ActorKind.ADMIN_KEY_ENV)
SYSTEM: Final = Actor(ActorKind.SYSTEM)


def key(key_id: str) -> Actor:
    return Actor(ActorKind.API_KEY, key_id)


class Action(StrEnum):
    """What an entry records; ``subject`` is the id of what it acted on."""

    ACCOUNT_CREATED = "account.created"
    """subject: the account. details: name, plan, overdraft_limit."""
    ACCOUNT_UPDATED = "account.updated"
    """subject: the account. details: ``{field: {from, to}}`` for its name and metadata."""
    ACCOUNT_STATUS_CHANGED = "account.status_changed"
    """subject: the account. details: from, to."""
    ACCOUNT_OVERDRAFT_CHANGED = "account.overdraft_changed"
    """subject: the account. details: from, to."""
    ACCOUNT_PLAN_CHANGED = "account.plan_changed"
    """subject: the account. details: from, to, effective (``now``, ``next_period``)."""
    GRANT_CREATED = "grant.created"
    """subject: the grant. details: amount, source, pool, priority, effective_at,
    expires_at, reason, transaction."""
    GRANT_VOIDED = "grant.voided"
    """subject: the grant. details: amount (what left the account), reason, transaction,
    released_holds (the pending holds on it that the void released)."""
    REFUND_CREATED = "refund.created"
    """subject: the refund's transaction. details: amount, usage, reason."""
    PURCHASE_REFUNDED = "purchase.refunded"
    """subject: the purchase. details: amount and currency refunded now, reason."""
    SETTINGS_CHANGED = "settings.changed"
    """subject: the new version. details: changes."""
    FEATURE_PUT = "feature.put"
    """subject: the feature. details: name, pool, rule, version."""
    RERATE_BOOKED = "rerate.booked"
    """subject: the account's adjustment transaction. details: rerate (the booking),
    version, since, until, amount (credits into the account: negative, taken)."""
    PRICES_SYNCED = "prices.synced"
    """subject: the price book version. details: version, created (false: the catalogue
    changed nothing), source, providers (null: all), prices."""
    PLAN_PUT = "plan.put"
    """subject: the plan. details: the plan as ``PUT /v1/plans`` takes it."""
    PACKAGE_PUT = "package.put"
    """subject: the package. details: its credits, price, badges and state."""
    API_KEY_CREATED = "api_key.created"
    """subject: the new key (never its secret). details: role, name."""
    API_KEY_REVOKED = "api_key.revoked"
    """subject: the key revoked. details: role, name."""
    WEBHOOK_ENDPOINT_CREATED = "webhook_endpoint.created"
    """subject: the endpoint (never its secret). details: url, event_types, description,
    enabled."""
    WEBHOOK_ENDPOINT_UPDATED = "webhook_endpoint.updated"
    """subject: the endpoint. details: ``{field: {from, to}}`` for the fields changed."""
    WEBHOOK_ENDPOINT_DELETED = "webhook_endpoint.deleted"
    """subject: the endpoint. details: what it was, as at creation."""
    WEBHOOK_ENDPOINT_SECRET_ROTATED = "webhook_endpoint.secret_rotated"
    """subject: the endpoint (never a secret). details: previous_secret_until."""
    PORTAL_SESSION_CREATED = "portal_session.created"
    """subject: the session (never its link). details: expires_at, return_url."""
    WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"
    """subject: the endpoint, disabled by the system after failed deliveries in a row.
    details: failures, reason."""
    NOTIFICATION_PREFERENCES_UPDATED = "notification_preferences.updated"
    """subject: the account. details: ``{field: {from, to}}`` for emails and channels."""


@dataclass(frozen=True)
class AuditEntry:
    id: str
    created_at: datetime
    actor: Actor
    action: Action
    account_id: AccountId | None
    subject_id: str | None
    details: Mapping[str, Any] = field(default_factory=dict)
