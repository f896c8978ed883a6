"""A usage to charge: the one spelling of it that the library, the client, the HTTP API,
a batch, idempotency and the usage record all take. A new field of a usage is added here
(to both classes), to the table and to a migration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, TypedDict, cast

Quantities = Mapping[str, int | str | Decimal]


class UsageFields(TypedDict, total=False):
    """A usage's fields after its account and feature, as ``charge`` takes them."""

    usage: Quantities | None
    credits: int | None
    model: str | None
    member: str | None
    metadata: Mapping[str, Any] | None
    provider_cost: Decimal | None
    idempotency_key: str | None


@dataclass(frozen=True)
class UsageEvent:
    """One usage to charge: ``usage`` quantities priced by the feature's rule, or
    ``credits`` as they are; with neither, one call."""

    account_id: str
    feature: str
    usage: Quantities | None = None
    credits: int | None = None
    model: str | None = None
    member: str | None = None
    metadata: Mapping[str, Any] | None = None
    provider_cost: Decimal | None = None
    idempotency_key: str | None = None

    def params(self) -> dict[str, Any]:
        """What makes two charges the same, for their idempotency key, by the names the
        HTTP API gives them (``account`` for the account id). A field added after keys were
        first stored counts only when it is given: those keys replay as before."""
        params: dict[str, Any] = {"account": self.account_id}
        for name in _PARAMS:
            value = getattr(self, name)
            if value is not None or name in _PRINTED_WHEN_NONE:
                params[name] = value
        return params

    def fields(self) -> UsageFields:
        """Its fields after the account and feature, as ``charge`` takes them."""
        given = {name: value for name, value in vars(self).items() if name not in _AT_FRONT}
        return cast(UsageFields, given)


_AT_FRONT = frozenset(("account_id", "feature"))
_PRINTED_WHEN_NONE = frozenset(
    ("feature", "usage", "credits", "model", "member", "metadata", "provider_cost")
)
"""The fields that keys stored by earlier versions printed even when ``None``."""
_PARAMS = tuple(
    f.name for f in fields(UsageEvent) if f.name not in ("account_id", "idempotency_key")
)
"""Every field but the account id (printed as ``account``) and the idempotency key."""
