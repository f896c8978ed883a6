"""The payment provider's webhook: verify the signature, store the raw event once, answer.
The event is applied afterwards, by the worker, exactly once."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from creditmeter.api.errors import PayloadTooLarge
from creditmeter.api.schemas.common import errors
from creditmeter.api.schemas.payments import STRIPE_EVENT_SCHEMA, WebhookReceived
from creditmeter.meter import CreditMeter

router = APIRouter(tags=["payments"])

MAX_EVENT_BYTES = 1 << 20
"""Stripe's events are a few kilobytes; a body above a mebibyte is refused unread."""
SIGNATURE_HEADER = {
    "name": "Stripe-Signature",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "`t=<unix time>,v1=<hex HMAC-SHA256 of <t>.<body>>` under the endpoint's "
    "signing secret; without it the delivery is 400.",
}


@router.post(
    "/v1/webhooks/stripe",
    responses=errors(400, 413, 503),
    openapi_extra={
        "parameters": [SIGNATURE_HEADER],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": STRIPE_EVENT_SCHEMA}},
        },
    },
)
async def receive_stripe_event(request: Request) -> WebhookReceived:
    """Stripe's webhook deliveries. No API key: the `Stripe-Signature` header
    authenticates the body, and a body whose signature does not verify, or was made more
    than 300 s ago, is 400 `invalid_signature` and stored nowhere. A verified event is
    stored (once: `duplicate` when it was received before) and applied afterwards; the
    answer does not wait for that."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_EVENT_BYTES:
        raise PayloadTooLarge(f"an event is at most {MAX_EVENT_BYTES} bytes")
    payload = bytearray()
    async for chunk in request.stream():
        payload += chunk
        if len(payload) > MAX_EVENT_BYTES:
            raise PayloadTooLarge(f"an event is at most {MAX_EVENT_BYTES} bytes")
    signature = request.headers.get("stripe-signature")
    meter: CreditMeter = request.app.state.meter
    fresh = await run_in_threadpool(meter.receive_payment_event, bytes(payload), signature)
    return WebhookReceived(duplicate=not fresh)
