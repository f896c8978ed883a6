"""Who hears an account's events, and how."""

from __future__ import annotations

from fastapi import APIRouter

from creditmeter.api.auth import AccountService, Meter, actor
from creditmeter.api.schemas.common import errors
from creditmeter.api.schemas.notifications import (
    NotificationPreferencesOut,
    NotificationPreferencesPut,
)

router = APIRouter(prefix="/v1/accounts", tags=["notifications"])


@router.get("/{account_id}/notification-preferences", responses=errors(401, 403, 404))
def get_notification_preferences(
    account_id: str, meter: Meter, _: AccountService
) -> NotificationPreferencesOut:
    """The account's billing email addresses and the channels of each event type."""
    return NotificationPreferencesOut.of(meter.notification_preferences(account_id))


@router.put("/{account_id}/notification-preferences", responses=errors(401, 403, 404, 422))
def put_notification_preferences(
    account_id: str, body: NotificationPreferencesPut, meter: Meter, key: AccountService
) -> NotificationPreferencesOut:
    """Replace the preferences; the same body again changes nothing. Emails go to
    `emails` for the events whose channels include `email`; webhooks to the endpoints for
    those whose channels include `webhook`."""
    return NotificationPreferencesOut.of(
        meter.set_notification_preferences(
            account_id, emails=body.emails, channels=body.channels, actor=actor(key)
        )
    )
