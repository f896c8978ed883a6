"""Stripe's webhook signature scheme: ``Stripe-Signature: t=<unix time>,v1=<hex>``, the
HMAC-SHA256 of ``"<t>.<body>"`` under the endpoint's secret, valid within a tolerance of
the timestamp. The development provider signs its deliveries this way too."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

from creditmeter.core.payments import InvalidSignature

TOLERANCE_SECONDS: Final = 300


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header of ``payload``, signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    payload: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise ``InvalidSignature`` unless ``header`` signs ``payload`` within ``tolerance``
    seconds of ``now``."""
    if not header:
        raise InvalidSignature("the Stripe-Signature header is missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InvalidSignature("the Stripe-Signature header has no timestamp or no v1 signature")
    expected = sign(payload, secret, timestamp).partition(",v1=")[2]
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise InvalidSignature("the signature does not match the payload")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance:
        raise InvalidSignature(f"the signature's timestamp is {int(age)} s old, past {tolerance} s")
