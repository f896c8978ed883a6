from __future__ import annotations

import pytest

from creditmeter.core import ids

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def value_of(identifier: str) -> int:
    _, _, text = identifier.partition("_")
    value = 0
    for char in text:
        value = value * 32 + ALPHABET.index(char)
    return value


@pytest.fixture(autouse=True)
def no_ids_made_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's last id forgotten (and remembered again after the test)."""
    monkeypatch.setattr("creditmeter.core.ids._last", 0)


def at(monkeypatch: pytest.MonkeyPatch, millisecond: int) -> None:
    monkeypatch.setattr("creditmeter.core.ids.time.time_ns", lambda: millisecond * 1_000_000 + 123)


def test_an_id_is_its_prefix_and_26_characters_that_start_with_the_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at(monkeypatch, 1_773_144_000_000)
    made = ids.new_id("use")
    assert made.startswith("use_")
    assert len(made) == 4 + 26
    assert set(made[4:]) <= set(ALPHABET)
    assert value_of(made) >> 80 == 1_773_144_000_000


def test_ids_of_one_millisecond_count_up_from_a_random_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at(monkeypatch, 1_773_144_000_001)
    made = [ids.new_id("txn") for _ in range(1_000)]
    values = [value_of(m) for m in made]
    assert values == list(range(values[0], values[0] + 1_000))
    assert made == sorted(made)
    at(monkeypatch, 1_773_144_000_002)
    later = value_of(ids.new_id("txn"))
    assert later >> 80 == 1_773_144_000_002
    random_part = (1 << 80) - 1
    assert later & random_part != (values[-1] + 1) & random_part  # a new random start


def test_ids_keep_increasing_when_the_clock_goes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    at(monkeypatch, 1_773_144_000_010)
    first = ids.new_id("hold")
    at(monkeypatch, 1_773_144_000_005)
    second = ids.new_id("hold")
    assert value_of(second) == value_of(first) + 1
    assert second > first
