"""The documentation pages load everything from this server: they work offline."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

ASSET = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url: ?'([^']+)'""")


def linked(page: str) -> list[str]:
    """Every address a page loads: scripts, styles, icons and the schema."""
    return [src or url for src, url in ASSET.findall(page)]


@pytest.mark.parametrize(
    ("path", "scripts"),
    [
        ("/docs", ["/docs/assets/swagger-ui-bundle.js"]),
        ("/redoc", ["/docs/assets/redoc.standalone.js"]),
    ],
)
def test_a_documentation_page_loads_its_assets_from_this_server(
    client: TestClient, path: str, scripts: list[str]
) -> None:
    page = client.get(path)

    assert page.status_code == 200
    addresses = linked(page.text)
    assert "/openapi.json" in addresses
    assert set(scripts) <= set(addresses)
    assert all(a.startswith("/") and not a.startswith("//") for a in addresses), addresses
    for address in addresses:
        asset = client.get(address)
        assert asset.status_code == 200, address
        assert asset.content
    for script in scripts:
        assert "javascript" in client.get(script).headers["content-type"]
