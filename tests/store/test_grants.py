"""The running totals of what an account's grants hold free, read through indexes alone
and never moved below zero; the grants that ended, read by their ends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from creditmeter import CreditMeter
from creditmeter.core.types import GrantSource
from creditmeter.store import grants
from creditmeter.store.errors import ConcurrentUpdate
from tests.conftest import Clock
from tests.store.test_holds import plan


@pytest.fixture
def acme(meter: CreditMeter, clock: Clock) -> CreditMeter:
    meter.create_account("acme")
    meter.grant("acme", 10, source="admin")
    meter.grant("acme", 7, source="purchase", pool="chat")
    meter.grant("acme", 5, source="purchase", pool="chat", effective_at=clock() + timedelta(days=1))
    return meter


def test_free_credits_are_the_totals_less_the_grants_that_begin_later(
    acme: CreditMeter, clock: Clock
) -> None:
    with acme.db.read() as conn:
        now = grants.free_by_pool(conn, "acme", clock())
        tomorrow = grants.free_by_pool(conn, "acme", clock() + timedelta(days=1))
    assert now == {("*", GrantSource.ADMIN): 10, ("chat", GrantSource.PURCHASE): 7}
    assert tomorrow == {("*", GrantSource.ADMIN): 10, ("chat", GrantSource.PURCHASE): 12}


def test_free_credits_are_read_through_indexes(acme: CreditMeter, clock: Clock) -> None:
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        statements.append((sql, params))

    event.listen(acme.db.engine, "before_cursor_execute", seen)
    with acme.db.read() as conn:
        grants.free_by_pool(conn, "acme", clock())
    event.remove(acme.db.engine, "before_cursor_execute", seen)

    [(sql, params)] = statements
    with acme.db.read() as conn:
        found = plan(conn, sql, params)
    assert "ix_grants_effective" in found
    # The totals by their primary key, the account's grants by start alone.
    assert "pk_grant_free" in found or "sqlite_autoindex_grant_free_1" in found
    assert "SCAN grants" not in found
    assert "Seq Scan" not in found


def test_ended_grants_and_the_next_end_are_read_through_the_index_of_ends(
    acme: CreditMeter, clock: Clock
) -> None:
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        statements.append((sql, params))

    since = clock() - timedelta(days=1)
    event.listen(acme.db.engine, "before_cursor_execute", seen)
    with acme.db.read() as conn:
        grants.ending(conn, "acme", since, clock())
        grants.next_ends(conn, "acme", since, 3)
    event.remove(acme.db.engine, "before_cursor_execute", seen)

    assert len(statements) == 2
    with acme.db.read() as conn:
        for sql, params in statements:
            found = plan(conn, sql, params)
            assert "ix_grants_ends" in found, sql
            assert "TEMP B-TREE" not in found, sql
            assert "Sort" not in found, sql


def test_a_running_total_is_never_moved_below_zero(acme: CreditMeter, clock: Clock) -> None:
    with pytest.raises(ConcurrentUpdate), acme.db.write() as conn:
        grants.move_free(conn, {("acme", "*", GrantSource.ADMIN): -11})
    with acme.db.write() as conn:
        grants.move_free(conn, {("acme", "*", GrantSource.ADMIN): -10})
        assert grants.free_by_pool(conn, "acme", clock()) == {("chat", GrantSource.PURCHASE): 7}
        conn.rollback()


def test_a_total_no_grant_opened_is_not_made_up(acme: CreditMeter) -> None:
    with pytest.raises(ConcurrentUpdate), acme.db.write() as conn:
        grants.move_free(conn, {("acme", "*", GrantSource.BONUS): 5})
