"""Outgoing webhooks: the endpoints that hear about events, and the log of each delivery.

An event is delivered to every enabled endpoint whose event types name it (or are ``*``),
signed per the Standard Webhooks specification with the endpoint's secret.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from creditmeter.core.errors import InvalidRequest

EVENT_TYPES: Final = frozenset(
    {
        "balance.low",
        "balance.critical",
        "balance.recovered",
        "allowance.threshold",
        "purchase.fulfilled",
        "purchase.failed",
        "purchase.refunded",
        "recharge.succeeded",
        "recharge.failed",
        "auto_recharge.disabled",
        "hold.expired",
        "account.suspended",
        "account.reactivated",
        "grant.created",
        "grant.expiring",
        "period.renewed",
        "webhook_endpoint.disabled",
    }
)
"""The events creditmeter sends (docs/notifications.md describes each, and
:mod:`creditmeter.events.catalogue` holds the schema of each one's ``data``)."""
ALL_EVENTS: Final = "*"
MAX_URL: Final = 2000
MAX_DESCRIPTION: Final = 500
MAX_OVERLAP: Final = timedelta(days=7)
"""The longest a rotated-out secret may keep signing."""
DISABLE_AFTER: Final = 20
"""Failed deliveries in a row after which an endpoint is disabled, by default."""


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    url: str
    event_types: tuple[str, ...]
    """The events it hears, or ``("*",)`` for all of them."""
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    failures: int = 0
    """Failed deliveries since the last success."""
    disabled_reason: str | None = None
    """Why creditmeter disabled it (failures in a row); ``None`` otherwise."""
    previous_secret_until: datetime | None = None
    """Until when deliveries are signed with the secret before the last rotation too."""

    def hears(self, event_type: str) -> bool:
        return self.enabled and (ALL_EVENTS in self.event_types or event_type in self.event_types)


@dataclass(frozen=True)
class Event:
    """What an endpoint receives; ``id`` is the same on every attempt, for receivers to
    deduplicate by."""

    id: str
    type: str
    created_at: datetime
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver one event to one endpoint."""

    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    attempt: int
    status_code: int | None
    """The receiver's answer; ``None`` when none came (a timeout, a refused connection)."""
    latency_ms: int
    error: str | None
    """Why the attempt failed; ``None`` for a 2xx answer."""
    next_retry_at: datetime | None
    """When the next attempt is due; ``None`` once delivered or given up."""
    created_at: datetime


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_PRIVATE_SETTING: Final = "CREDITMETER_WEBHOOK_ALLOW_PRIVATE"


def url(value: object, *, allow_private: bool = False) -> str:
    """``value`` if it is an absolute http(s) URL, else :class:`InvalidRequest`; one whose
    host is ``localhost`` or a literal address that is not public is refused too, unless
    ``allow_private``."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL or "\x00" in value:
        raise InvalidRequest(f"url must be an http or https URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 (a port out of range raises ValueError)
    except ValueError as error:
        raise InvalidRequest(f"url must be an absolute http or https URL: {error}") from error
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidRequest(f"url must be an absolute http or https URL, not {value!r}")
    why = None if allow_private else literal_refusal(host)
    if why is not None:
        raise InvalidRequest(
            f"url must not point at a {why} address ({host}): webhooks go to public "
            f"addresses unless {ALLOW_PRIVATE_SETTING}=true"
        )
    return value


def literal_refusal(host: str) -> str | None:
    """Why a webhook may not go to ``host`` as written (``localhost``, or a literal
    address that is not public); ``None`` for a name, which is checked once resolved."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return "loopback"
    try:
        address = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return None
    return refusal(address)


def refusal(address: IPAddress) -> str | None:
    """Why a webhook may not be sent to ``address``, in a word (``loopback``,
    ``private`` …); ``None`` for a public address. An IPv4-mapped IPv6 address is judged
    as the IPv4 address it maps."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for why, applies in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),
    ):
        if applies:
            return why
    return None


def event_types(value: object) -> tuple[str, ...]:
    """The event types an endpoint may hear: ``["*"]``, or some of :data:`EVENT_TYPES`."""
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, str) for v in value)
    ):
        raise InvalidRequest('event_types must be a non-empty list of event types, or ["*"]')
    unknown = sorted(set(value) - EVENT_TYPES - {ALL_EVENTS})
    if unknown:
        known = ", ".join(sorted(EVENT_TYPES))
        raise InvalidRequest(f"unknown event types {unknown}; known: {known}, or *")
    if ALL_EVENTS in value:
        return (ALL_EVENTS,)
    return tuple(sorted(set(value)))


def description(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION or "\x00" in value:
        raise InvalidRequest(f"description must be text of at most {MAX_DESCRIPTION} characters")
    return value


def overlap(value: object) -> timedelta:
    """How long a rotated-out secret keeps signing: 0 to :data:`MAX_OVERLAP`."""
    if not isinstance(value, timedelta) or not timedelta(0) <= value <= MAX_OVERLAP:
        days = MAX_OVERLAP.days
        raise InvalidRequest(f"the overlap must be from 0 seconds to {days} days")
    return value
