"""A lean way through a metering endpoint, for the requests every metered operation makes.

:class:`LeanRoute` is a FastAPI route: FastAPI still reads its signature for the OpenAPI
document and still answers every request the lean way does not take. A request whose
JSON body, key and headers are all as they should be is answered without FastAPI's
dependency resolution: the body is validated by the route's own body field, the key is
the one already looked up for the request, and the endpoint runs in one trip to the
thread pool. Anything else (no key or the wrong role, a malformed or invalid body,
another content type, an invalid header) goes to FastAPI with the body read so far, so
that every error is the one FastAPI gives.

A route is lean only when its endpoint is a plain function answering a ``Response``,
with path parameters that are strings, at most one body, the ``Idempotency-Key`` header,
and no dependencies other than the meter and a role's admission (``auth.at_least``);
any other route behaves as an ``APIRoute``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, get_type_hints

from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from creditmeter.api.auth import ADMISSIONS, authenticated, meter_of
from creditmeter.api.threads import in_thread
from creditmeter.core.keys import Role

IDEMPOTENCY_HEADER: Final = b"idempotency-key"
MAX_IDEMPOTENCY_KEY: Final = 255
JSON: Final = b"application/json"


@dataclass(frozen=True)
class Plan:
    """What the lean way passes to the endpoint, by parameter name."""

    role: Role
    admitted: str
    meter: str | None
    body: Any
    """The route's body field, or ``None``."""
    idempotency_key: str | None
    path_params: tuple[tuple[str, str], ...]
    """Each path parameter's name, and its name in the path."""


def plan_of(route: APIRoute) -> Plan | None:
    """How the route's endpoint can be called the lean way, or ``None`` if it cannot."""
    dependant = route.dependant
    call = dependant.call
    if (
        call is None
        or inspect.iscoroutinefunction(call)
        or get_type_hints(call).get("return") is not Response
        or route.methods != {"POST"}
        or dependant.query_params
        or dependant.cookie_params
        or len(dependant.body_params) > 1
        or route._embed_body_fields
        or len(dependant.header_params) > 1
        or any(p.field_info.annotation is not str for p in dependant.path_params)
    ):
        return None
    idempotency_key = None
    for header in dependant.header_params:
        if header.alias != "Idempotency-Key":
            return None
        idempotency_key = header.name
    meter = admitted = role = None
    for sub in dependant.dependencies:
        if sub.call is meter_of:
            meter = sub.name
        elif sub.call in ADMISSIONS and role is None:
            role, admitted = ADMISSIONS[sub.call], sub.name
        else:
            return None
    if role is None or admitted is None:
        return None
    return Plan(
        role=role,
        admitted=admitted,
        meter=meter,
        body=route.body_field,
        idempotency_key=idempotency_key,
        path_params=tuple((p.name, p.alias) for p in dependant.path_params),
    )


def _headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """The request's content type and idempotency key (the first of each)."""
    content_type = key = None
    for name, value in scope["headers"]:
        if name == b"content-type" and content_type is None:
            content_type = value
        elif name == IDEMPOTENCY_HEADER and key is None:
            key = value
    return content_type, key


def _replayed(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body already read given again first."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}


class LeanRoute(APIRoute):
    """An ``APIRoute`` that answers the requests it can the lean way (see the module)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.plan = plan_of(self)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self.plan
        if plan is None or scope["method"] != "POST":
            await super().handle(scope, receive, send)
            return
        body = b""
        if plan.body is not None:
            try:
                body = await Request(scope, receive).body()
            except ClientDisconnect:
                await super().handle(scope, _disconnected, send)
                return
            receive = _replayed(body, receive)
        arguments = await self._arguments(plan, scope, body)
        if arguments is None:
            await super().handle(scope, receive, send)
            return
        response: Response = await in_thread(self.endpoint, **arguments)
        await response(scope, receive, send)

    async def _arguments(self, plan: Plan, scope: Scope, body: bytes) -> dict[str, Any] | None:
        """The endpoint's arguments, or ``None`` where FastAPI is to answer."""
        content_type, idempotency_key = _headers(scope)
        arguments: dict[str, Any] = {}
        if plan.idempotency_key is not None:
            if idempotency_key is None:
                arguments[plan.idempotency_key] = None
            else:
                text = idempotency_key.decode("latin-1")
                if not 1 <= len(text) <= MAX_IDEMPOTENCY_KEY:
                    return None
                arguments[plan.idempotency_key] = text
        if plan.body is not None:
            if not body or content_type != JSON:
                return None
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):  # malformed, or nested too deep
                return None
            value, problems = plan.body.validate(data, {}, loc=("body",))
            if problems:
                return None
            arguments[plan.body.name] = value
        key = await authenticated(scope)
        if key is None or not key.at_least(plan.role):
            return None
        scope["state"]["api_key"] = key
        arguments[plan.admitted] = key
        if plan.meter is not None:
            arguments[plan.meter] = scope["app"].state.meter
        path_params = scope["path_params"]
        for name, alias in plan.path_params:
            arguments[name] = path_params[alias]
        return arguments
