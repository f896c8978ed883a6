from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from creditmeter.core import metadata
from creditmeter.core.errors import InvalidRequest


def test_within_the_bounds_it_is_a_plain_copy() -> None:
    given = {"a": [1, 2.5, None, True, {"b": "c"}]}
    kept = metadata.checked(given)
    assert kept == given
    assert kept is not given
    assert metadata.checked(None) == {}


@pytest.mark.parametrize(
    ("value", "bound"),
    [
        ({"a": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}, "nested more than 16 levels deep"),
        ({"a": {f"k{i}": i for i in range(256)}}, "257 keys"),
        ({"a": "é" * 4_000, "b": "é" * 4_000, "c": "x" * 500}, "16522 bytes as JSON"),
        ({"a": "x\x00"}, "NUL"),
        ({"a": math.nan}, "finite"),
        ({"a": datetime(2026, 1, 1, tzinfo=UTC)}, "must be JSON"),
    ],
)
def test_past_a_bound_it_is_refused_naming_it(value: dict[str, Any], bound: str) -> None:
    with pytest.raises(InvalidRequest, match=bound):
        metadata.checked(value)
