"""Request bodies: bounded in size, and left unread where the key they need is missing.

Plain ASGI middleware, in front of FastAPI (which reads and parses a whole body before it
looks at the key):

- a body whose declared ``Content-Length`` is over its route's limit is 413 at once,
  before a byte of it is read;
- a body sent without a length (chunked) is counted as it arrives and is 413 as soon as
  it passes the limit; the rest is never read;
- a body sent to a route that needs an API key, without a valid key, is 401 before it is
  read.

The limit is ``CREDITMETER_MAX_BODY_BYTES`` (1 MiB), and for the batch of usage events
``CREDITMETER_MAX_BATCH_BODY_BYTES`` (16 MiB).
"""

from __future__ import annotations

from typing import Final

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditmeter.api.auth import authenticated
from creditmeter.api.errors import PayloadTooLarge, Unauthenticated, error_body

DEFAULT_MAX_BODY_BYTES: Final = 1 << 20
DEFAULT_MAX_BATCH_BODY_BYTES: Final = 16 << 20
BATCH_PATHS: Final = frozenset({"/v1/usage/batch"})
"""The routes that take the larger, batch limit."""
KEYED_PREFIX: Final = "/v1/"
OPEN_PREFIXES: Final = ("/v1/webhooks/",)
"""Routes under ``/v1/`` that take a body without an API key (their body is signed)."""


class BodyTooLarge(HTTPException):
    """A body grew past its limit while it was read; FastAPI passes an ``HTTPException``
    raised while it reads a body on to the application's handler (errors.py)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    return f"a request body here is at most {limit} bytes"


def too_large(limit: int) -> JSONResponse:
    return JSONResponse(error_body(PayloadTooLarge.code, too_large_message(limit)), 413)


def unauthenticated(headers: Headers) -> JSONResponse:
    message = (
        "the API key is not valid or was revoked"
        if "authorization" in headers
        else "an API key is required: Authorization: Bearer <key>"
    )
    return JSONResponse(
        error_body(Unauthenticated.code, message), 401, headers={"WWW-Authenticate": "Bearer"}
    )


def needs_key(path: str) -> bool:
    return path.startswith(KEYED_PREFIX) and not path.startswith(OPEN_PREFIXES)


class BodyLimits:
    """Refuses a body over its route's limit, or without the key its route needs, before
    the application reads it."""

    def __init__(self, app: ASGIApp, *, default: int, batch: int) -> None:
        self.app = app
        self.default = default
        self.batch = batch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.batch if path in BATCH_PATHS else self.default
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large(limit)(scope, receive, send)
            return
        has_body = declared not in (None, "0") or "transfer-encoding" in headers
        if has_body and needs_key(path) and await authenticated(scope) is None:
            await unauthenticated(headers)(scope, receive, send)
            return

        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await too_large(limit)(scope, receive, send)
