"""API keys: created with a secret shown once, kept as a SHA-256 digest, revocable.

The secret has 256 random bits, so a fast digest is enough: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy.engine import Connection

from creditmeter.core.audit import Action, Actor
from creditmeter.core.errors import InvalidRequest, NotFound
from creditmeter.core.ids import new_id
from creditmeter.core.keys import ApiKey, Role
from creditmeter.service import audit
from creditmeter.store import accounts, api_keys

SECRET_PREFIX = "cm_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(
    conn: Connection,
    now: datetime,
    role: str,
    account_id: str | None,
    name: str | None,
    actor: Actor,
) -> tuple[ApiKey, str]:
    """A new key and its secret (the only time the secret exists outside the caller)."""
    try:
        kind = Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise InvalidRequest(f"role must be one of {known}") from None
    if (kind is Role.ACCOUNT) != (account_id is not None):
        raise InvalidRequest("an account key names its account; other keys name none")
    if account_id is not None and accounts.get(conn, account_id) is None:
        raise NotFound("account", account_id)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        role=kind,
        account_id=account_id,
        name=name or f"{kind.value} key",
        prefix=secret[: len(SECRET_PREFIX) + 6],
        created_at=now,
    )
    api_keys.insert(conn, key, digest(secret))
    _record(conn, now, actor, Action.API_KEY_CREATED, key)
    return key, secret


def revoke(conn: Connection, now: datetime, key_id: str, actor: Actor) -> None:
    """Revoke a key; revoking it again changes (and records) nothing."""
    key = api_keys.get(conn, key_id)
    if key is None:
        raise NotFound("api key", key_id)
    if api_keys.revoke(conn, key_id, now):
        _record(conn, now, actor, Action.API_KEY_REVOKED, key)


def _record(conn: Connection, now: datetime, actor: Actor, action: Action, key: ApiKey) -> None:
    audit.record(
        conn,
        now,
        actor,
        action,
        account_id=key.account_id,
        subject_id=key.id,
        details={"role": key.role.value, "name": key.name},
    )
