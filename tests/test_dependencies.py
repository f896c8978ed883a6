"""The requirements: those whose internals the code uses are bounded above, and
constraints.txt pins a known-good set that the requirements allow."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent.parent
INTERNALS_USED = {
    "sqlalchemy": "store/_statements.py: the compiler's bind and result processors",
    "psycopg": "store/_statements.py: pipeline, COPY and cursors on the driver's connection",
    "fastapi": "api/auth.py: fastapi.security.utils",
    "uvicorn": "cli/workers.py: uvicorn.Server run on its own sockets",
    "fastapi-offline": "api/docs.py: the assets it ships",
    "pyrate-limiter": "api/rate_limits.py: its buckets",
    "openai": "integrations/openai.py: the create methods of a copied client's resources",
    "anthropic": "integrations/anthropic.py: the create method of a copied client's messages",
    "litellm": "integrations/litellm.py: CustomLogger's proxy hooks and get_llm_provider",
}


def requirements() -> dict[str, Requirement]:
    """pyproject's requirements, the dev extra's included, by canonical name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {canonicalize_name(r.name): r for r in map(Requirement, listed)}


def pins() -> dict[str, str]:
    """constraints.txt's ``name==version`` lines, by canonical name."""
    pinned: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pinned[canonicalize_name(name)] = version.strip()
    return pinned


def test_a_dependency_whose_internals_are_used_is_bounded_above() -> None:
    found = requirements()
    for name, why in INTERNALS_USED.items():
        upper = [s for s in found[name].specifier if s.operator in ("<", "<=", "==", "~=")]
        assert upper, f"{name} needs an upper bound: {why}"


def test_the_constraints_pin_every_requirement_at_a_version_it_allows() -> None:
    pinned = pins()
    for name, requirement in requirements().items():
        assert name in pinned, f"constraints.txt does not pin {name}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {name}=={pinned[name]}, outside {requirement}"
        )
    assert canonicalize_name("creditmeter") not in pinned
