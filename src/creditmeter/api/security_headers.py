"""Security headers: ``X-Content-Type-Options: nosniff`` on every response; on every HTML
page a Content-Security-Policy, a Referrer-Policy, and framing denied.

A page that needs more than :data:`PAGE_POLICY` allows (an inline style, a script of its
own) or that is meant to be embedded sends its own policy, made with
:func:`content_security_policy`; the middleware keeps it, and denies framing with
``X-Frame-Options`` only where the policy's ``frame-ancestors`` is ``'none'``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY: Final = {
    "default-src": "'none'",
    "style-src": "'self'",
    "img-src": "'self'",
    "form-action": "'self'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
}
"""What a page may load by default: its own styles and images, nothing else; it posts
forms only to this server and is framed by no one."""

NO_FRAMING = "frame-ancestors 'none'"


def content_security_policy(**sources: str) -> str:
    """:data:`PAGE_POLICY` with ``sources`` added or replaced, ``_`` in a name standing for
    ``-``: ``content_security_policy(frame_ancestors="https://app.example")`` is the policy
    of a page that app may embed."""
    directives = PAGE_POLICY | {name.replace("_", "-"): value for name, value in sources.items()}
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def inline_source(text: str) -> str:
    """The source that allows one inline ``<script>`` or ``<style>`` element of this text."""
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return f"'sha256-{digest}'"


DEFAULT_POLICY: Final = content_security_policy()


class SecurityHeaders:
    """Plain ASGI middleware that adds the headers when a response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def respond(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", ()))
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if headers.get("content-type", "").startswith("text/html"):
                    policy = headers.setdefault("Content-Security-Policy", DEFAULT_POLICY)
                    headers.setdefault("Referrer-Policy", "no-referrer")
                    if NO_FRAMING in policy:
                        headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, respond)
