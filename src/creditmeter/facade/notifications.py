"""Outgoing webhooks and email preferences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from creditmeter.core.audit import LIBRARY, Actor
from creditmeter.core.notifications import NotificationPreferences
from creditmeter.core.webhooks import Delivery, WebhookEndpoint
from creditmeter.facade.base import MeterBase
from creditmeter.service import (
    mail,
)
from creditmeter.service import webhooks as webhooks_service
from creditmeter.store import notifications as notifications_store
from creditmeter.store import webhooks as webhooks_store

T = TypeVar("T")


class NotificationVerbs(MeterBase):
    def create_webhook_endpoint(
        self,
        url: str,
        *,
        event_types: Sequence[str] = ("*",),
        description: str = "",
        enabled: bool = True,
        actor: Actor = LIBRARY,
    ) -> tuple[WebhookEndpoint, str]:
        """A new endpoint that hears ``event_types`` (``*``: all) and its signing secret
        (``whsec_…``), which cannot be shown again."""
        return self._write(
            lambda conn, now: webhooks_service.create(
                conn,
                now,
                url=url,
                event_types=list(event_types),
                description=description,
                enabled=enabled,
                actor=actor,
                allow_private=self.webhook_allow_private,
            )
        )

    def update_webhook_endpoint(
        self, endpoint_id: str, *, actor: Actor = LIBRARY, **changes: Any
    ) -> WebhookEndpoint:
        """Change some of ``url``, ``event_types``, ``description`` and ``enabled``."""
        return self._write(
            lambda conn, now: webhooks_service.update(
                conn, now, endpoint_id, changes, actor, self.webhook_allow_private
            )
        )

    def rotate_webhook_secret(
        self,
        endpoint_id: str,
        *,
        overlap: timedelta = timedelta(hours=24),
        actor: Actor = LIBRARY,
    ) -> tuple[WebhookEndpoint, str]:
        """A new signing secret for the endpoint, which cannot be shown again; the old one
        signs too for ``overlap`` (at most 7 days) by the meter's clock."""
        return self._write(
            lambda conn, now: webhooks_service.rotate_secret(conn, now, endpoint_id, overlap, actor)
        )

    def delete_webhook_endpoint(self, endpoint_id: str, *, actor: Actor = LIBRARY) -> None:
        self._write(lambda conn, now: webhooks_service.delete(conn, now, endpoint_id, actor))

    def notification_preferences(self, account_id: str) -> NotificationPreferences:
        """An account's billing email addresses and the channels of each event type."""
        with self.db.read() as conn:
            return mail.preferences(conn, account_id)

    def set_notification_preferences(
        self,
        account_id: str,
        *,
        emails: Sequence[str] = (),
        channels: Mapping[str, Sequence[str]] | None = None,
        actor: Actor = LIBRARY,
    ) -> NotificationPreferences:
        """Replace an account's preferences: the addresses that get its emails and, per
        event type or ``*``, the channels (``email``, ``webhook``) it is sent on."""
        return self._write(
            lambda conn, now: mail.put_preferences(
                conn,
                now,
                account_id,
                emails=list(emails),
                channels={k: list(v) for k, v in (channels or {}).items()},
                actor=actor,
            )
        )

    def email_deliveries(self, event_id: str) -> list[dict[str, Any]]:
        """The attempts to email an event, oldest first: recipient, attempt, error and
        the next retry."""
        with self.db.read() as conn:
            return notifications_store.deliveries(conn, event_id)

    def webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        with self.db.read() as conn:
            return webhooks_service.get(conn, endpoint_id)

    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        with self.db.read() as conn:
            return webhooks_store.list_all(conn)

    def webhook_deliveries(self, endpoint_id: str, *, limit: int = 100) -> list[Delivery]:
        """An endpoint's delivery attempts, newest first."""
        with self.db.read() as conn:
            webhooks_service.get(conn, endpoint_id)
            return webhooks_store.deliveries(conn, endpoint_id, limit)

    def redeliver_webhook(self, endpoint_id: str, delivery_id: str) -> bool:
        """Queue the event of one of the endpoint's deliveries to it again, with the same
        ``webhook-id``; ``False`` if that delivery was redelivered already."""
        queued = self._write(
            lambda conn, now: webhooks_service.redeliver(conn, now, endpoint_id, delivery_id)
        )
        if queued:
            self._jobs_queued()
        return queued
