"""How long a fault-injection run is, from the options ``--reliability-long`` and
``--reliability-seed`` (declared in tests/conftest.py, so they work from anywhere)::

    pytest tests/reliability --reliability-long -s
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import DEFAULT_SEED, LONG_SCALE


@dataclass(frozen=True)
class Reliability:
    """How long a fault-injection run is and which random choices it makes."""

    scale: int
    seed: int


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Reliability:
    long: bool = request.config.getoption("--reliability-long", default=False)
    seed: int = request.config.getoption("--reliability-seed", default=DEFAULT_SEED)
    return Reliability(scale=LONG_SCALE if long else 1, seed=seed)
