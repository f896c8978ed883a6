"""Rendering the dashboards' pages: one Jinja2 environment, the operator's branding, the
security headers each page needs, and the refusals pages answer with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from creditmeter.api.dashboards import charts, formatting
from creditmeter.api.security_headers import content_security_policy


@dataclass(frozen=True)
class Branding:
    name: str
    logo_url: str | None
    accent: str
    embed_origins: tuple[str, ...]
    public_url: str | None

    def image_sources(self) -> str:
        """``img-src``: this server, and the logo's origin if it is elsewhere."""
        if self.logo_url and "://" in self.logo_url:
            parts = urlsplit(self.logo_url)
            return f"'self' {parts.scheme}://{parts.netloc}"
        return "'self'"


environment = Environment(
    loader=PackageLoader("creditmeter.api.dashboards", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(
    credits=formatting.credits,
    money=formatting.money,
    day=formatting.day,
    moment=formatting.moment,
    percent=formatting.percent,
    rule=formatting.rule,
    usd=formatting.usd,
    ratio=formatting.ratio,
    money_of=formatting.money_of,
    detail=formatting.detail,
)
environment.globals.update(bar=charts.bar)


def branding(request: Request) -> Branding:
    found: Branding = request.app.state.branding
    return found


def base_url(request: Request) -> str:
    """Where this server's pages are reached: the configured public URL, else the
    request's own."""
    configured = branding(request).public_url
    return configured or str(request.base_url).rstrip("/")


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    frame_ancestors: str = "'none'",
    **context: Any,
) -> HTMLResponse:
    brand = branding(request)
    page = environment.get_template(template).render(brand=brand, request=request, **context)
    policy = content_security_policy(img_src=brand.image_sources(), frame_ancestors=frame_ancestors)
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": policy}
    return HTMLResponse(page, status_code=status, headers=headers)


class PageRefused(Exception):
    """A page's refusal, rendered as a page: ``status`` with a title and a message."""

    def __init__(self, status: int, title: str, message: str, *, home: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.home = home


class SignInNeeded(Exception):
    """The admin console's pages without a valid session: to the sign-in page."""


def refused(request: Request, error: PageRefused) -> HTMLResponse:
    return render(
        request,
        "message.html",
        status=error.status,
        title=error.title,
        message=error.message,
        home=error.home,
    )
