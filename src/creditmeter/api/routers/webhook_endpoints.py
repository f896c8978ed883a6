"""Outgoing webhook endpoints, managed by superadmins, and their delivery logs."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from creditmeter.api.auth import Meter, Superadmin, actor
from creditmeter.api.schemas.common import Page, errors
from creditmeter.api.schemas.webhook_endpoints import (
    DeliveryOut,
    Redelivery,
    SecretRotation,
    WebhookEndpointChange,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointOut,
)

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])
EndpointId = Annotated[str, Path(max_length=255)]


@router.post("", status_code=201, responses=errors(401, 403, 422))
def create_webhook_endpoint(
    body: WebhookEndpointCreate, meter: Meter, caller: Superadmin
) -> WebhookEndpointCreated:
    """A new endpoint for signed events. Its signing `secret` is in this response only."""
    endpoint, secret = meter.create_webhook_endpoint(
        body.url,
        event_types=body.event_types,
        description=body.description,
        enabled=body.enabled,
        actor=actor(caller),
    )
    return WebhookEndpointCreated(**WebhookEndpointOut.of(endpoint).model_dump(), secret=secret)


@router.get("", responses=errors(401, 403))
def list_webhook_endpoints(meter: Meter, _: Superadmin) -> Page[WebhookEndpointOut]:
    """Every endpoint, oldest first; never their secrets."""
    found = [WebhookEndpointOut.of(e) for e in meter.webhook_endpoints()]
    return Page(data=found, next_cursor=None)


@router.get("/{endpoint_id}", responses=errors(401, 403, 404))
def get_webhook_endpoint(
    endpoint_id: EndpointId, meter: Meter, _: Superadmin
) -> WebhookEndpointOut:
    return WebhookEndpointOut.of(meter.webhook_endpoint(endpoint_id))


@router.patch("/{endpoint_id}", responses=errors(401, 403, 404, 422))
def update_webhook_endpoint(
    endpoint_id: EndpointId, body: WebhookEndpointChange, meter: Meter, caller: Superadmin
) -> WebhookEndpointOut:
    """Change some fields; the others keep their values."""
    changed = meter.update_webhook_endpoint(endpoint_id, actor=actor(caller), **body.changes())
    return WebhookEndpointOut.of(changed)


@router.post("/{endpoint_id}/rotate-secret", responses=errors(401, 403, 404, 422))
def rotate_webhook_secret(
    endpoint_id: EndpointId,
    meter: Meter,
    caller: Superadmin,
    body: SecretRotation | None = None,
) -> WebhookEndpointCreated:
    """A new signing `secret`, in this response only. For `overlap_seconds` (24 h) each
    delivery carries a signature by the old secret too, so receivers can switch."""
    overlap = timedelta(seconds=(body or SecretRotation()).overlap_seconds)
    endpoint, secret = meter.rotate_webhook_secret(
        endpoint_id, overlap=overlap, actor=actor(caller)
    )
    return WebhookEndpointCreated(**WebhookEndpointOut.of(endpoint).model_dump(), secret=secret)


@router.delete(
    "/{endpoint_id}", status_code=204, response_class=Response, responses=errors(401, 403, 404)
)
def delete_webhook_endpoint(endpoint_id: EndpointId, meter: Meter, caller: Superadmin) -> None:
    """Delete an endpoint and its delivery log; events not yet delivered to it never
    will be."""
    meter.delete_webhook_endpoint(endpoint_id, actor=actor(caller))


@router.get("/{endpoint_id}/deliveries", responses=errors(401, 403, 404, 422))
def list_deliveries(
    endpoint_id: EndpointId,
    meter: Meter,
    _: Superadmin,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[DeliveryOut]:
    """The endpoint's delivery attempts, newest first: status code, latency, error and
    when a failed one is tried again."""
    found = meter.webhook_deliveries(endpoint_id, limit=limit)
    return Page(data=[DeliveryOut.of(d) for d in found], next_cursor=None)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    responses=errors(401, 403, 404, 422),
)
def redeliver_webhook(
    endpoint_id: EndpointId,
    delivery_id: Annotated[str, Path(max_length=255)],
    meter: Meter,
    _: Superadmin,
) -> Redelivery:
    """Queue the event of this delivery to the endpoint again, with the same `webhook-id`;
    a repeat for the same delivery queues nothing. A disabled endpoint is 422."""
    return Redelivery(queued=meter.redeliver_webhook(endpoint_id, delivery_id))
