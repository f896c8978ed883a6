"""Who gets in: API keys, portal sessions and the dashboards' secret."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from creditmeter.core.audit import LIBRARY, Actor
from creditmeter.core.errors import NotFound
from creditmeter.core.keys import ApiKey
from creditmeter.core.portal import LINK_LIFETIME, PortalSession
from creditmeter.facade.base import MeterBase
from creditmeter.service import api_keys as api_keys_service
from creditmeter.service import portal_sessions as portal_sessions_service
from creditmeter.store import api_keys as api_keys_store

T = TypeVar("T")


class AccessVerbs(MeterBase):
    def create_api_key(
        self,
        role: str,
        *,
        account_id: str | None = None,
        name: str | None = None,
        actor: Actor = LIBRARY,
    ) -> tuple[ApiKey, str]:
        """A new API key and its secret, which is not stored and cannot be shown again."""
        return self._write(
            lambda conn, now: api_keys_service.create(conn, now, role, account_id, name, actor)
        )

    def revoke_api_key(self, key_id: str, *, actor: Actor = LIBRARY) -> None:
        self._write(lambda conn, now: api_keys_service.revoke(conn, now, key_id, actor))

    def api_keys(self) -> list[ApiKey]:
        with self.db.read() as conn:
            return api_keys_store.list_all(conn)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The active key whose secret this is, if any. Read from the database every time,
        so that a key revoked by any process is refused by every other at once."""
        with self.db.read_one() as conn:
            return api_keys_store.active_by_digest(conn, api_keys_service.digest(secret))

    def api_key(self, key_id: str) -> ApiKey:
        """The key of this id, revoked or not (never its secret)."""
        with self.db.read() as conn:
            found = api_keys_store.get(conn, key_id)
        if found is None:
            raise NotFound("api key", key_id)
        return found

    def create_portal_session(
        self,
        account_id: str,
        *,
        return_url: str | None = None,
        lifetime: timedelta = LINK_LIFETIME,
        actor: Actor = LIBRARY,
    ) -> tuple[PortalSession, str]:
        """A one-time link's session to the account's customer portal and the link's
        token, which is not stored and cannot be shown again."""
        return self._write(
            lambda conn, now: portal_sessions_service.create(
                conn, now, account_id, return_url, lifetime, actor
            )
        )

    def open_portal_session(self, token: str) -> PortalSession | None:
        """Use the link of this token: its session, or ``None`` if the token is unknown,
        already used or expired."""
        return self._write(lambda conn, now: portal_sessions_service.open_link(conn, now, token))

    def dashboard_secret(self) -> str:
        """The database's secret that signs the dashboards' session cookies, the same in
        every process on the database."""
        return self._secret("dashboard_sessions")
