"""Options of the fault-injection suite: ``--reliability-long`` and ``--reliability-seed``.

Pytest reads these options only from conftest files it loads at start-up, so name this
directory (or a file in it) on the command line to use them::

    pytest tests/reliability --reliability-long -s
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

LONG_SCALE = 20
"""How much ``--reliability-long`` multiplies the operation budget and the kills by."""
DEFAULT_SEED = 2026


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reliability", "fault-injection tests")
    group.addoption(
        "--reliability-long",
        action="store_true",
        default=False,
        help=f"run the fault-injection tests {LONG_SCALE} times longer, with as many more faults",
    )
    group.addoption(
        "--reliability-seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the operations and of the faults (default {DEFAULT_SEED})",
    )


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
