"""Authentication by API key (``Authorization: Bearer …``) and what each role may do."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from creditmeter.api.errors import Forbidden, Unauthenticated
from creditmeter.core.errors import NotFound
from creditmeter.core.keys import ApiKey, Role
from creditmeter.meter import CreditMeter

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer cm_…`")

ADMIN_KEY = ApiKey(
    id="admin_key",
    role=Role.SUPERADMIN,
    account_id=None,
    name="CREDITMETER_ADMIN_KEY",
    prefix="",
    created_at=datetime(2000, 1, 1, tzinfo=UTC),
)


def meter_of(request: Request) -> CreditMeter:
    meter: CreditMeter = request.app.state.meter
    return meter


Meter = Annotated[CreditMeter, Depends(meter_of)]


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    """The key the request is made with; 401 without a valid one."""
    if credentials is None:
        raise Unauthenticated("an API key is required: Authorization: Bearer <key>")
    secret = credentials.credentials
    admin_key: str | None = request.app.state.admin_key
    if admin_key is not None and hmac.compare_digest(secret.encode(), admin_key.encode()):
        key: ApiKey | None = ADMIN_KEY
    else:
        key = meter_of(request).authenticate(secret)
    if key is None:
        raise Unauthenticated("the API key is not valid or was revoked")
    request.state.api_key = key
    return key


Caller = Annotated[ApiKey, Depends(caller)]


def at_least(role: Role) -> Callable[[ApiKey], ApiKey]:
    """A dependency admitting keys of ``role`` and the staff roles above it."""

    def admit(key: Caller) -> ApiKey:
        if not key.at_least(role):
            raise Forbidden(f"this needs the {role.value} role or above")
        return key

    return admit


Service = Annotated[ApiKey, Depends(at_least(Role.SERVICE))]
Admin = Annotated[ApiKey, Depends(at_least(Role.ADMIN))]
Superadmin = Annotated[ApiKey, Depends(at_least(Role.SUPERADMIN))]


def reader_of(account_id: str, key: Caller) -> ApiKey:
    """Staff keys, and the account's own key; any other account's key gets 404, exactly as
    if the account did not exist."""
    if not key.may_see(account_id):
        raise NotFound("account", account_id)
    return key


AccountReader = Annotated[ApiKey, Depends(reader_of)]


def service_on(account_id: str, key: Caller) -> ApiKey:
    """Staff keys of service rank and above, on an account path: another account's key
    gets 404 (it does not learn the account exists), the account's own key 403."""
    reader_of(account_id, key)
    return at_least(Role.SERVICE)(key)


AccountService = Annotated[ApiKey, Depends(service_on)]
