"""The API's documentation pages, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, with
their scripts and styles served from the installed ``fastapi-offline`` package rather
than a CDN: they work offline and load nothing from another origin."""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from creditmeter.api.security_headers import content_security_policy, inline_source

ASSETS = "/docs/assets"
"""Where the package's ``swagger-ui-bundle.js``, ``swagger-ui.css``,
``redoc.standalone.js`` and ``favicon.png`` are served."""

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _swagger_policy(page: str) -> str:
    """Swagger UI's: its bundle and the page's one inline script (which starts it, by its
    hash), its inline styles and data: images, and requests to this server (the schema,
    "Try it out")."""
    scripts = " ".join(inline_source(s) for s in _INLINE_SCRIPT.findall(page))
    return content_security_policy(
        script_src=f"'self' {scripts}",
        style_src="'self' 'unsafe-inline'",
        img_src="'self' data:",
        connect_src="'self'",
    )


REDOC_POLICY = content_security_policy(
    script_src="'self'",
    style_src="'self' 'unsafe-inline'",
    img_src="'self' data:",
    connect_src="'self'",
    worker_src="blob:",
)
"""ReDoc's: its bundle, the styles it writes into the page, data: images, the schema from
this server, and the search worker it starts from a blob."""


def install(app: FastAPI) -> None:
    """``/docs``, ``/redoc`` and their assets; the app is made with ``docs_url=None`` and
    ``redoc_url=None``."""
    app.mount(ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters={"validatorUrl": None},
        )
        policy = _swagger_policy(bytes(page.body).decode())
        page.headers["Content-Security-Policy"] = policy
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_POLICY
        return page
