"""Outgoing webhook endpoints and their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from creditmeter.api.schemas.common import NO_NUL, Body
from creditmeter.core.webhooks import (
    MAX_DESCRIPTION,
    MAX_OVERLAP,
    MAX_URL,
    Delivery,
    WebhookEndpoint,
)

Url = Annotated[str, Field(min_length=1, max_length=MAX_URL, pattern=NO_NUL)]
EventType = Annotated[str, Field(min_length=1, max_length=100)]
EventTypes = Annotated[
    list[EventType],
    Field(min_length=1, max_length=100, description='Event types it hears, or `["*"]`: all.'),
]
Description = Annotated[str, Field(max_length=MAX_DESCRIPTION, pattern=r"^[^\x00]*$")]


class WebhookEndpointCreate(Body):
    url: Url = Field(description="Where events are POSTed (http or https).")
    event_types: EventTypes = Field(default_factory=lambda: ["*"])
    description: Description = ""
    enabled: bool = True

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://example.com/hooks/creditmeter",
                    "event_types": ["purchase.fulfilled", "purchase.refunded"],
                    "description": "billing service",
                }
            ]
        }
    )


class WebhookEndpointChange(Body):
    """The fields to change; those left out keep their values."""

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class WebhookEndpointOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why creditmeter disabled it (failed deliveries in a row); null otherwise."
    )
    failures: int = Field(description="Failed deliveries since the last success.")
    previous_secret_until: datetime | None = Field(
        description="Until when deliveries are also signed with the secret it had before "
        "its last rotation; null if it was never rotated."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, e: WebhookEndpoint) -> WebhookEndpointOut:
        return cls(
            id=e.id,
            url=e.url,
            event_types=list(e.event_types),
            description=e.description,
            enabled=e.enabled,
            disabled_reason=e.disabled_reason,
            failures=e.failures,
            previous_secret_until=e.previous_secret_until,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str = Field(description="The signing secret (`whsec_…`): shown here once, never again.")


class SecretRotation(Body):
    overlap_seconds: int = Field(
        default=86_400,
        ge=0,
        le=int(MAX_OVERLAP.total_seconds()),
        description="How long deliveries are signed with the old secret too (24 h).",
    )


class Redelivery(BaseModel):
    queued: bool = Field(
        description="Whether a delivery was queued; false if this one was redelivered before."
    )


class DeliveryOut(BaseModel):
    id: str
    event_id: str = Field(description="The `webhook-id` header: the same on every attempt.")
    event_type: str
    attempt: int
    status_code: int | None = Field(description="The receiver's answer; null if none came.")
    latency_ms: int
    error: str | None = Field(description="Why the attempt failed; null if it succeeded.")
    next_retry_at: datetime | None = Field(
        description="When it is tried again; null once delivered or given up."
    )
    created_at: datetime

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            event_id=d.event_id,
            event_type=d.event_type,
            attempt=d.attempt,
            status_code=d.status_code,
            latency_ms=d.latency_ms,
            error=d.error,
            next_retry_at=d.next_retry_at,
            created_at=d.created_at,
        )
