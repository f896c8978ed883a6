"""SQL for idempotency keys, kept permanently with the first result.

A key belongs to its owner: ``OPERATOR`` for the operator's side (the library, the CLI,
staff and service keys), an account's id for the keys that account's own API keys send.
One owner's key never answers, or conflicts with, another's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.store import direct
from creditmeter.store.tables import idempotency_keys

OPERATOR: Final = ""
"""The owner of the keys the operator's side sends."""

_FIND = direct.Statement(
    sa.select(
        idempotency_keys.c.operation, idempotency_keys.c.fingerprint, idempotency_keys.c.result
    ).where(
        idempotency_keys.c.owner == sa.bindparam("the_owner"),
        idempotency_keys.c.key == sa.bindparam("the_key"),
    )
)
_RECORD = direct.Statement(idempotency_keys.insert())


def find(conn: Connection, key: str, owner: str = OPERATOR) -> tuple[str, str, Any] | None:
    """``(operation, fingerprint, result)`` stored under ``owner``'s ``key``, if any."""
    return _stored(direct.rows(conn, _FIND, {"the_owner": owner, "the_key": key}))


def find_with_next(conn: Connection, key: str) -> Callable[[], tuple[str, str, Any] | None]:
    """``find`` of the operator's ``key``, its query sent with the next queries of
    ``direct.rows_each``, after them and in the same round trip (``direct.with_next``)."""
    found = direct.with_next(conn, _FIND, {"the_owner": OPERATOR, "the_key": key})
    return lambda: _stored(found())


def _stored(rows: Sequence[direct.Row]) -> tuple[str, str, Any] | None:
    return (rows[0]["operation"], rows[0]["fingerprint"], rows[0]["result"]) if rows else None


def record(
    conn: Connection,
    key: str,
    operation: str,
    fingerprint: str,
    result: Any,
    at: datetime,
    owner: str = OPERATOR,
) -> None:
    direct.run(
        conn,
        _RECORD,
        {
            "owner": owner,
            "key": key,
            "operation": operation,
            "fingerprint": fingerprint,
            "result": result,
            "created_at": at,
        },
    )


def find_many(conn: Connection, keys: Sequence[str]) -> dict[str, tuple[str, str, Any]]:
    """``find`` for many of the operator's keys in one statement."""
    if not keys:
        return {}
    found = direct.rows(conn, _FIND_MANY, {"keys": list(keys)})
    return {r["key"]: (r["operation"], r["fingerprint"], r["result"]) for r in found}


_FIND_MANY = direct.Statement(
    sa.select(
        idempotency_keys.c.key,
        idempotency_keys.c.operation,
        idempotency_keys.c.fingerprint,
        idempotency_keys.c.result,
    ).where(idempotency_keys.c.owner == OPERATOR, direct.one_of(idempotency_keys.c.key, "keys"))
)


def record_many(
    conn: Connection, entries: Sequence[tuple[str, str, str, Any]], at: datetime
) -> None:
    """``record`` for many of the operator's ``(key, operation, fingerprint, result)`` in
    one statement."""
    direct.run_many(
        conn,
        _RECORD,
        [
            {
                "owner": OPERATOR,
                "key": k,
                "operation": o,
                "fingerprint": f,
                "result": r,
                "created_at": at,
            }
            for k, o, f, r in entries
        ],
    )
