"""Who hears an account's events, and how: its billing email addresses and, per event
type, the channels (``email``, ``webhook``) it is sent on.

An account without preferences has no addresses and hears every event on every channel;
``*`` stands for every event type without a line of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from creditmeter.core.errors import InvalidRequest

EMAIL: Final = "email"
WEBHOOK: Final = "webhook"
CHANNELS: Final = frozenset({EMAIL, WEBHOOK})
ALL_EVENTS: Final = "*"
MAX_EMAILS: Final = 10
MAX_EMAIL: Final = 254
_PART = r'[^@\s<>,;"\x00-\x1f\x7f]+'
_ADDRESS = re.compile(rf"{_PART}@{_PART}\.{_PART}")
"""An address as people write it: no spaces, controls or NUL, one @, a dot after it."""


@dataclass(frozen=True)
class NotificationPreferences:
    account_id: str
    emails: tuple[str, ...] = ()
    """The billing addresses that email notifications go to."""
    channels: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {ALL_EVENTS: (EMAIL, WEBHOOK)}
    )
    """Per event type (or ``*``), the channels it is sent on; ``()`` silences it."""
    updated_at: datetime | None = None

    def wants(self, event_type: str, channel: str) -> bool:
        chosen = self.channels.get(event_type, self.channels.get(ALL_EVENTS, ()))
        return channel in chosen


def emails(value: object) -> tuple[str, ...]:
    """Up to :data:`MAX_EMAILS` distinct email addresses, in the order given."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest("emails must be a list of email addresses")
    if len(value) > MAX_EMAILS:
        raise InvalidRequest(f"at most {MAX_EMAILS} email addresses")
    bad = [v for v in value if len(v) > MAX_EMAIL or not _ADDRESS.fullmatch(v)]
    if bad:
        raise InvalidRequest(f"not email addresses: {bad}")
    return tuple(dict.fromkeys(value))


def channels(value: object, event_types: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """Event type (one of ``event_types``, or ``*``) to a list of channels; ``*`` is every
    channel unless given."""
    if not isinstance(value, Mapping):
        raise InvalidRequest('channels must map event types (or "*") to lists of channels')
    found: dict[str, tuple[str, ...]] = {ALL_EVENTS: (EMAIL, WEBHOOK)}
    for event_type, chosen in value.items():
        if event_type != ALL_EVENTS and event_type not in event_types:
            known = ", ".join(sorted(event_types))
            raise InvalidRequest(f"unknown event type {event_type!r}; known: {known}, or *")
        if not isinstance(chosen, (list, tuple)) or not set(chosen) <= CHANNELS:
            raise InvalidRequest(
                f"the channels of {event_type} must be a list of {sorted(CHANNELS)}"
            )
        found[event_type] = tuple(sorted(set(chosen)))
    return found
