"""Security headers on every response, and a page's own policy where it needs one."""

from __future__ import annotations

import re

from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient

from creditmeter.api.security_headers import content_security_policy, inline_source

PAGES = ["/docs", "/redoc", "/dev/checkout/pur_unknown"]


def directives(policy: str) -> dict[str, str]:
    return {name: value for name, _, value in (d.strip().partition(" ") for d in policy.split(";"))}


def test_every_html_page_has_a_policy_a_referrer_policy_and_denies_framing(
    client: TestClient,
) -> None:
    for path in PAGES:
        page = client.get(path)
        assert page.headers["content-type"].startswith("text/html"), path
        policy = directives(page.headers["content-security-policy"])
        assert policy["default-src"] == "'none'", path
        assert policy["frame-ancestors"] == "'none'", path
        assert policy["base-uri"] == "'none'", path
        assert "'unsafe-inline'" not in policy.get("script-src", ""), path
        assert "'unsafe-eval'" not in policy.get("script-src", ""), path
        assert page.headers["x-frame-options"] == "DENY", path
        assert page.headers["referrer-policy"] == "no-referrer", path
        assert page.headers["x-content-type-options"] == "nosniff", path


def test_every_other_response_is_not_sniffed(client: TestClient) -> None:
    for response in (
        client.get("/healthz"),
        client.get("/v1/accounts"),
        client.get("/openapi.json"),
        client.get("/docs/assets/swagger-ui-bundle.js"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in response.headers


def test_a_page_s_inline_script_or_style_is_allowed_by_its_hash_alone(
    client: TestClient,
) -> None:
    swagger = client.get("/docs")
    [script] = re.findall(r"<script>(.*?)</script>", swagger.text, re.DOTALL)
    checkout = client.get("/dev/checkout/pur_unknown")
    [style] = re.findall(r"<style>(.*?)</style>", checkout.text, re.DOTALL)

    swagger_policy = directives(swagger.headers["content-security-policy"])
    checkout_policy = directives(checkout.headers["content-security-policy"])
    assert swagger_policy["script-src"] == f"'self' {inline_source(script)}"
    assert checkout_policy["style-src"] == inline_source(style)
    assert "script-src" not in checkout_policy


def test_a_page_meant_to_be_embedded_keeps_its_own_framing_policy(client: TestClient) -> None:
    policy = content_security_policy(frame_ancestors="https://app.example")

    async def embedded() -> HTMLResponse:
        return HTMLResponse("<p>embedded</p>", headers={"Content-Security-Policy": policy})

    client.app.add_api_route("/embedded", embedded)  # type: ignore[attr-defined]
    page = client.get("/embedded")

    assert page.headers["content-security-policy"] == policy
    assert directives(policy)["frame-ancestors"] == "https://app.example"
    assert "x-frame-options" not in page.headers
    assert page.headers["referrer-policy"] == "no-referrer"
