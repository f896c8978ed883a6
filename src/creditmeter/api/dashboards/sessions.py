"""The dashboards' browser sessions: signed cookies, and CSRF tokens bound to them.

A cookie holds ``kind``, ``subject`` (the account of a portal session, the key id of an
admin's), its expiry and a random nonce, signed with HMAC-SHA256 under the database's
``dashboard_sessions`` secret, so any process on the database can check it and nothing
is stored per session. A form's CSRF token is an HMAC of the cookie it goes with: a page
of another site can neither read it nor make it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from starlette.requests import Request
from starlette.responses import Response

Kind = Literal["portal", "embed", "admin", "sign-in"]

COOKIES: Final[dict[Kind, str]] = {
    "portal": "creditmeter_portal",
    "embed": "creditmeter_embed",
    "admin": "creditmeter_admin",
    "sign-in": "creditmeter_sign_in",
}
PATHS: Final[dict[Kind, str]] = {
    "portal": "/portal",
    "embed": "/portal/embed",
    "admin": "/admin",
    "sign-in": "/admin",
}
CSRF_FIELD: Final = "csrf_token"


@dataclass(frozen=True)
class Session:
    kind: Kind
    subject: str
    expires_at: int
    value: str
    """The cookie's value as sent: what its CSRF token is derived from."""
    extra: dict[str, str]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, message: str) -> str:
    return _b64(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest())


def seal(
    secret: str,
    kind: Kind,
    subject: str,
    expires_at: datetime,
    extra: dict[str, str] | None = None,
) -> str:
    """A signed value naming ``subject`` (and ``extra``) until ``expires_at``."""
    payload = {
        "k": kind,
        "s": subject,
        "e": int(expires_at.timestamp()),
        "n": secrets.token_hex(8),
        "x": extra or {},
    }
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_mac(secret, body)}"


def unseal(secret: str, kind: Kind, value: str | None, now: datetime) -> Session | None:
    """The session of a signed value, if the signature holds, it is of ``kind`` and it has
    not expired."""
    if not value or value.count(".") != 1:
        return None
    body, mac = value.split(".")
    if not hmac.compare_digest(mac, _mac(secret, body)):
        return None
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    if payload.get("k") != kind or int(payload.get("e", 0)) <= now.timestamp():
        return None
    extra = payload.get("x") or {}
    return Session(kind, str(payload["s"]), int(payload["e"]), value, dict(extra))


def csrf_token(secret: str, session: Session) -> str:
    return _mac(secret, f"csrf:{session.value}")


def csrf_holds(secret: str, session: Session, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given, csrf_token(secret, session))


def set_cookie(
    request: Request, response: Response, kind: Kind, value: str, lifetime: timedelta
) -> None:
    """HttpOnly, SameSite=Lax, Secure when the request came over HTTPS, on the path of its
    dashboard only."""
    response.set_cookie(
        COOKIES[kind],
        value,
        max_age=int(lifetime.total_seconds()),
        path=PATHS[kind],
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response, kind: Kind) -> None:
    response.delete_cookie(COOKIES[kind], path=PATHS[kind])


def from_request(secret: str, kind: Kind, request: Request, now: datetime) -> Session | None:
    return unseal(secret, kind, request.cookies.get(COOKIES[kind]), now)
