"""A Python client of the creditmeter HTTP API, with the library's verbs, records and
errors: ``CreditMeterClient(url, api_key)`` stands in for ``CreditMeter()``."""

from creditmeter.client.errors import (
    AuthenticationFailed,
    PermissionDenied,
    RemoteError,
    ServiceUnavailable,
)
from creditmeter.client.meter import CreditMeterClient, HeldOperation

__all__ = [
    "AuthenticationFailed",
    "CreditMeterClient",
    "HeldOperation",
    "PermissionDenied",
    "RemoteError",
    "ServiceUnavailable",
]
