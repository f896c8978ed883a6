"""The benchmarks' own plumbing: another checkout's code seeding and checking a database,
the runner's ``--baseline-src``, a row not measured, a round of threads on one account."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from benchmarks import Result, grouping, table
from benchmarks.run import main
from benchmarks.server import seed_with, verify_with

import creditmeter

SRC = Path(creditmeter.__file__).parent.parent


def test_a_checkouts_code_seeds_and_verifies(sqlite_url: str) -> None:
    seeded = seed_with(SRC, sqlite_url, ["acct-a", "acct-b"])

    assert seeded.accounts == ["acct-a", "acct-b"]
    assert seeded.service_key
    assert verify_with(SRC, sqlite_url) == []


def test_baseline_src_without_creditmeter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--only", "targets", "--baseline-src", str(tmp_path)])

    assert exited.value.code == 2


def test_a_row_not_measured_says_so() -> None:
    printed = table([Result("T3 against a baseline", math.nan, "", target="ratio ≥ 3")])

    assert "not measured" in printed
    assert "nan" not in printed


@pytest.mark.parametrize("grouped", [True, False])
def test_a_round_of_threads_on_one_account_checks_its_books(sqlite_url: str, grouped: bool) -> None:
    measured = grouping.run_round(sqlite_url, grouped=grouped, hot=True, pairs=2)

    assert measured.pairs_per_second > 0
    assert measured.cpu_ms_per_pair > 0
