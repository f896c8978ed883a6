"""The dashboards, served by the API's app: the customer portal (``/portal``) and the admin
console (``/admin``), server-rendered with Jinja2, styled by this package's own CSS,
charts drawn as inline SVG; no script and nothing fetched from elsewhere
(docs/dashboards.md)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from creditmeter.api.dashboards import admin, portal
from creditmeter.api.dashboards.pages import Branding, PageRefused, SignInNeeded, refused


def install(app: FastAPI, branding: Branding) -> None:
    app.state.branding = branding
    app.mount(
        "/dashboards/static",
        StaticFiles(packages=[("creditmeter.api.dashboards", "static")]),
        name="dashboards-static",
    )
    accent_css = f":root {{ --accent: {branding.accent}; }}\n"

    @app.get("/dashboards/brand.css", include_in_schema=False)
    async def brand_css() -> Response:
        """The operator's accent colour, as a style sheet (the pages allow no inline
        style)."""
        return Response(
            accent_css,
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=300"},
        )

    async def on_refused(request: Request, error: Exception) -> Response:
        assert isinstance(error, PageRefused)
        return refused(request, error)

    async def on_sign_in_needed(request: Request, _: Exception) -> Response:
        return RedirectResponse("/admin/sign-in", status_code=303)

    app.add_exception_handler(PageRefused, on_refused)
    app.add_exception_handler(SignInNeeded, on_sign_in_needed)
    app.include_router(portal.router)
    app.include_router(admin.router)
