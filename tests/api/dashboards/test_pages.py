"""The operator's branding and the pages' headers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings

BRANDED = ServerSettings(
    admin_key=SecretStr("x" * 40),
    worker=False,
    rate_limits=False,
    brand_name="Orbit AI",
    brand_logo_url="https://cdn.orbit.example/logo.svg",
    brand_accent="#0F766E",
)


def test_the_pages_wear_the_operators_brand(meter: CreditMeter) -> None:
    with TestClient(create_app(BRANDED, meter=meter)) as client:
        page = client.get("/admin/sign-in")
        assert "<title>Sign in · Orbit AI</title>" in page.text
        assert '<img src="https://cdn.orbit.example/logo.svg" alt="">' in page.text
        policy = page.headers["content-security-policy"]
        assert "img-src 'self' https://cdn.orbit.example;" in policy
        assert "script-src" not in policy
        assert page.headers["cache-control"] == "no-store"
        css = client.get("/dashboards/brand.css")
        assert css.text == ":root { --accent: #0F766E; }\n"
        assert css.headers["content-type"].startswith("text/css")
        assert client.get("/dashboards/static/dashboard.css").status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("brand_accent", "red; } body { display: none"),
        ("brand_logo_url", "javascript:alert(1)"),
        ("embed_origins", "https://app.example; script-src *"),
        ("brand_name", ""),
    ],
)
def test_branding_that_could_break_a_page_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        ServerSettings(**{field: value})  # type: ignore[arg-type]
