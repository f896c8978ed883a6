"""SQL for API keys, found by the digest of the secret."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.core.keys import ApiKey, Role
from creditmeter.store import _statements
from creditmeter.store.tables import api_keys


def _key(row: Mapping[Any, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        role=Role(row["role"]),
        account_id=row["account_id"],
        name=row["name"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def insert(conn: Connection, key: ApiKey, digest: str) -> None:
    conn.execute(
        api_keys.insert().values(
            id=key.id,
            digest=digest,
            prefix=key.prefix,
            role=key.role.value,
            account_id=key.account_id,
            name=key.name,
            created_at=key.created_at,
        )
    )


_BY_DIGEST = _statements.Statement(
    sa.select(api_keys).where(
        api_keys.c.digest == sa.bindparam("the_digest"), api_keys.c.revoked_at.is_(None)
    )
)


def active_by_digest(conn: Connection, digest: str) -> ApiKey | None:
    """The key of this digest if it is not revoked: on every request, so one statement
    through the statement cache."""
    rows = _statements.rows(conn, _BY_DIGEST, {"the_digest": digest})
    return _key(rows[0]) if rows else None


def list_all(conn: Connection) -> list[ApiKey]:
    query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    return [_key(r) for r in conn.execute(query).mappings()]


def revoke(conn: Connection, key_id: str, at: datetime) -> bool:
    result = conn.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return result.rowcount == 1


def get(conn: Connection, key_id: str) -> ApiKey | None:
    row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
    return None if row is None else _key(row)
