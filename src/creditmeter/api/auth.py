"""Authentication by API key (``Authorization: Bearer …``) and what each role may do."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.types import Scope

from creditmeter.api.errors import Forbidden, Unauthenticated
from creditmeter.api.threads import in_thread
from creditmeter.core import audit
from creditmeter.core.audit import Actor
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


# The dependencies are coroutines: FastAPI would run plain functions in its thread pool,
# a thread hop each on every request. Only the key's lookup in the database takes one.
# Those that admit a role or an account take the credentials and call ``caller`` rather
# than depend on ``Caller``: each level of dependencies costs FastAPI a pass per request.


async def meter_of(request: Request) -> CreditMeter:
    meter: CreditMeter = request.app.state.meter
    return meter


Meter = Annotated[CreditMeter, Depends(meter_of)]


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def authenticated(scope: Scope) -> ApiKey | None:
    """The key of the request's bearer secret, if it is valid: the admin key from the
    environment, or an active key in the database. Looked up once a request (the rate
    limits ask first, then the route's dependency)."""
    state = scope.setdefault("state", {})
    if "authenticated" in state:
        found: ApiKey | None = state["authenticated"]
        return found
    scheme, secret = get_authorization_scheme_param(Headers(scope=scope).get("authorization"))
    key: ApiKey | None = None
    if scheme.lower() == "bearer" and secret:
        admin_key: str | None = scope["app"].state.admin_key
        metrics_token: str | None = scope["app"].state.metrics_token
        if admin_key is not None and same_secret(secret, admin_key):
            key = ADMIN_KEY
        elif metrics_token is not None and same_secret(secret, metrics_token):
            pass  # not an API key, and not looked up: /metrics scrapes with the database down
        else:
            meter: CreditMeter = scope["app"].state.meter
            key = await in_thread(meter.authenticate, secret)
    state["authenticated"] = key
    return key


def same_secret(given: str, expected: str) -> bool:
    """Compared in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


async def caller(request: Request, credentials: Credentials) -> ApiKey:
    """The key the request is made with; 401 without a valid one."""
    if credentials is None:
        raise Unauthenticated("an API key is required: Authorization: Bearer <key>")
    key = await authenticated(request.scope)
    if key is None:
        raise Unauthenticated("the API key is not valid or was revoked")
    request.state.api_key = key
    return key


Caller = Annotated[ApiKey, Depends(caller)]


def actor(key: ApiKey) -> Actor:
    """Who a request acts as, for the audit log: the key from the environment is told
    apart from the stored keys."""
    return audit.ADMIN_KEY_ENV if key is ADMIN_KEY else audit.key(key.id)


def admitted(key: ApiKey, role: Role) -> ApiKey:
    if not key.at_least(role):
        raise Forbidden(f"this needs the {role.value} role or above")
    return key


def at_least(
    role: Role,
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[ApiKey]]:
    """A dependency admitting keys of ``role`` and the staff roles above it."""

    async def admit(request: Request, credentials: Credentials) -> ApiKey:
        return admitted(await caller(request, credentials), role)

    ADMISSIONS[admit] = role
    return admit


ADMISSIONS: dict[Callable[..., Any], Role] = {}
"""The role each dependency made by :func:`at_least` admits (for ``api.lean``)."""


Service = Annotated[ApiKey, Depends(at_least(Role.SERVICE))]
Admin = Annotated[ApiKey, Depends(at_least(Role.ADMIN))]
Superadmin = Annotated[ApiKey, Depends(at_least(Role.SUPERADMIN))]


def readable(account_id: str, key: ApiKey) -> ApiKey:
    """Staff keys, and the account's own key; any other account's key gets 404, exactly as
    if the account did not exist."""
    if not key.may_see(account_id):
        raise NotFound("account", account_id)
    return key


async def reader_of(account_id: str, request: Request, credentials: Credentials) -> ApiKey:
    return readable(account_id, await caller(request, credentials))


AccountReader = Annotated[ApiKey, Depends(reader_of)]


async def service_on(account_id: str, request: Request, credentials: Credentials) -> ApiKey:
    """Staff keys of service rank and above, on an account path: another account's key
    gets 404 (it does not learn the account exists), the account's own key 403."""
    return admitted(readable(account_id, await caller(request, credentials)), Role.SERVICE)


AccountService = Annotated[ApiKey, Depends(service_on)]
