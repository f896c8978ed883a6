"""Locking accounts with the grants a use case loads: one, or several together."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from creditmeter import CreditMeter
from creditmeter.core.grants import Grant
from creditmeter.store import accounts, idempotency


def by_id(grant: Grant) -> str:
    return grant.id


def test_accounts_locked_together_read_as_each_alone(meter: CreditMeter) -> None:
    meter.put_plan("pro", allowances={"*": 500})
    for name, plan in (("b-org", "pro"), ("a-org", None), ("c-org", "pro")):
        meter.create_account(name, plan=plan)
    meter.grant("a-org", 40, source="purchase")
    meter.grant("b-org", 7, source="admin")
    with meter.db.write() as conn:
        together = accounts.lock_many_with_grants(conn, ["c-org", "nobody", "a-org", "b-org"])
        alone = {a: accounts.lock_with_grants(conn, a) for a in ("a-org", "b-org", "c-org")}

    assert list(together) == ["a-org", "b-org", "c-org"]  # in the order of their ids
    for account_id, (row, grants) in together.items():
        found = alone[account_id]
        assert found is not None
        assert row == found[0]
        assert sorted(grants, key=by_id) == sorted(found[1], key=by_id)
    assert [len(grants) for _, grants in together.values()] == [1, 2, 1]


def test_an_idempotency_key_is_read_after_the_lock_in_its_round_trip(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"calls": 1})
    meter.create_account("acme")
    meter.grant("acme", 40, source="purchase")
    meter.charge("acme", "chat", credits=3, idempotency_key="k1")
    sent: list[tuple[str, bool]] = []

    def seen(conn: sa.Connection, _cursor: Any, sql: str, *_: Any) -> None:
        pgconn = getattr(conn.connection.dbapi_connection, "pgconn", None)
        in_pipeline = pgconn is not None and pgconn.pipeline_status != 0
        sent.append((sql, in_pipeline))

    with meter.db.write() as conn:
        alone = accounts.lock_with_grants(conn, "acme")
        stored = idempotency.find(conn, "k1")
        sa.event.listen(meter.db.engine, "before_cursor_execute", seen)
        try:
            found, with_it = accounts.lock_with_grants_and_key(conn, "acme", "k1")
        finally:
            sa.event.remove(meter.db.engine, "before_cursor_execute", seen)
        assert found == alone
        assert stored is not None
        assert with_it == stored
        assert accounts.lock_with_grants_and_key(conn, "acme", "absent")[1] is None
        assert accounts.lock_with_grants_and_key(conn, "nobody", "k1") == (None, stored)
    # The lock, the grants, then the key: one round trip on PostgreSQL.
    assert ["idempotency_keys" in sql for sql, _ in sent] == [False, False, True]
    assert [pipelined for _, pipelined in sent] == [meter.db.dialect == "postgresql"] * 3


def test_keys_of_accounts_locked_together_are_read_in_the_locks_round_trip(
    meter: CreditMeter,
) -> None:
    meter.put_feature("chat", rates={"calls": 1})
    for name in ("acme", "globex"):
        meter.create_account(name)
        meter.grant(name, 40, source="purchase")
    meter.charge("acme", "chat", credits=3, idempotency_key="k1")
    meter.charge("globex", "chat", credits=4, idempotency_key="k2")
    sent: list[tuple[str, bool]] = []

    def seen(conn: sa.Connection, _cursor: Any, sql: str, *_: Any) -> None:
        pgconn = getattr(conn.connection.dbapi_connection, "pgconn", None)
        sent.append((sql, pgconn is not None and pgconn.pipeline_status != 0))

    with meter.db.write() as conn:
        stored = idempotency.find_many(conn, ["k1", "k2"])
        alone = accounts.lock_many_with_grants(conn, ["acme", "globex"])
        sa.event.listen(meter.db.engine, "before_cursor_execute", seen)
        try:
            found, with_them = accounts.lock_many_with_grants_and_keys(
                conn, ["acme", "globex"], ["k1", "k2", "absent"]
            )
        finally:
            sa.event.remove(meter.db.engine, "before_cursor_execute", seen)

    assert found == alone
    assert set(with_them) == {"k1", "k2"}
    assert with_them == stored
    # The locks, the grants, then the keys: one round trip on PostgreSQL.
    assert ["idempotency_keys" in sql for sql, _ in sent] == [False, False, True]
    assert [pipelined for _, pipelined in sent] == [meter.db.dialect == "postgresql"] * 3
