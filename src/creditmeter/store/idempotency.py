"""SQL for idempotency keys, kept permanently with the first result.

A key belongs to its owner: ``OPERATOR`` for the operator's side (the library, the CLI,
staff and service keys), an account's id for the keys that account's own API keys send.
One owner's key never answers, or conflicts with, another's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, TypeAlias

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.store import _statements
from creditmeter.store.tables import idempotency_keys

OPERATOR: Final = ""
"""The owner of the keys the operator's side sends."""

StoredResult: TypeAlias = tuple[str, str, Any]
"""``(operation, fingerprint, result)`` stored under a key."""

_FIND = _statements.Statement(
    sa.select(
        idempotency_keys.c.operation, idempotency_keys.c.fingerprint, idempotency_keys.c.result
    ).where(
        idempotency_keys.c.owner == sa.bindparam("the_owner"),
        idempotency_keys.c.key == sa.bindparam("the_key"),
    )
)
_RECORD = _statements.Statement(idempotency_keys.insert())


def find(conn: Connection, key: str, owner: str = OPERATOR) -> StoredResult | None:
    """What is stored under ``owner``'s ``key``, if anything."""
    return stored_result(_statements.rows(conn, *find_query(key, owner)))


def find_query(key: str, owner: str = OPERATOR) -> _statements.Query:
    """The query of :func:`find`, for a repository to send with its own in one round trip;
    :func:`stored_result` reads its rows."""
    return _FIND, {"the_owner": owner, "the_key": key}


def stored_result(rows: Sequence[_statements.Row]) -> StoredResult | None:
    """What the rows of :func:`find_query` say is stored, if anything."""
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
    _statements.run(
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


def find_many(conn: Connection, keys: Sequence[str]) -> dict[str, StoredResult]:
    """``find`` for many of the operator's keys in one statement."""
    if not keys:
        return {}
    return stored_results(_statements.rows(conn, *find_many_query(keys)))


def find_many_query(keys: Sequence[str]) -> _statements.Query:
    """The query of :func:`find_many`, for a repository to send with its own in one round
    trip; :func:`stored_results` reads its rows."""
    return _FIND_MANY, {"keys": list(keys)}


def stored_results(rows: Sequence[_statements.Row]) -> dict[str, StoredResult]:
    """What the rows of :func:`find_many_query` say is stored, by key."""
    return {r["key"]: (r["operation"], r["fingerprint"], r["result"]) for r in rows}


_FIND_MANY = _statements.Statement(
    sa.select(
        idempotency_keys.c.key,
        idempotency_keys.c.operation,
        idempotency_keys.c.fingerprint,
        idempotency_keys.c.result,
    ).where(
        idempotency_keys.c.owner == OPERATOR, _statements.one_of(idempotency_keys.c.key, "keys")
    )
)


def record_many(
    conn: Connection, entries: Sequence[tuple[str, str, str, Any]], at: datetime
) -> None:
    """``record`` for many of the operator's ``(key, operation, fingerprint, result)`` in
    one statement."""
    _statements.run_many(
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
