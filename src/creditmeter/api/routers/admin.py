"""System settings and their change log; API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from creditmeter.api.auth import Admin, Meter, Superadmin, actor
from creditmeter.api.schemas.admin import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    SettingsChange,
    SettingsOut,
    SettingsVersionOut,
)
from creditmeter.api.schemas.common import Page, errors
from creditmeter.core.keys import ApiKey

router = APIRouter(prefix="/v1", tags=["admin"])


def changed_by(key: ApiKey) -> str:
    return f"{key.id} ({key.name})"


@router.get("/settings", responses=errors(401, 403))
def get_settings(meter: Meter, _: Admin) -> SettingsOut:
    """The system-wide settings in force."""
    return SettingsOut.of(meter.settings())


@router.put("/settings", responses=errors(401, 403, 422))
def change_settings(body: SettingsChange, meter: Meter, key: Superadmin) -> SettingsOut:
    """Change some settings; the others keep their values. Every change is a new version
    in the history, with the key that made it and when."""
    changed = meter.change_settings(body.changes(), changed_by=changed_by(key), actor=actor(key))
    return SettingsOut.of(changed)


@router.get("/settings/history", responses=errors(401, 403))
def settings_history(meter: Meter, _: Admin) -> Page[SettingsVersionOut]:
    """Every change of the settings, newest first."""
    versions = [SettingsVersionOut.of(v) for v in meter.settings_history()]
    return Page(data=versions, next_cursor=None)


@router.post("/api-keys", status_code=201, responses=errors(401, 403, 404, 422))
def create_api_key(body: ApiKeyCreate, meter: Meter, caller: Superadmin) -> ApiKeyCreated:
    """A new API key. Its secret, `key`, is in this response only: it is stored as a
    digest and cannot be shown again."""
    key, secret = meter.create_api_key(
        body.role, account_id=body.account, name=body.name, actor=actor(caller)
    )
    return ApiKeyCreated.of(key, secret)


@router.get("/api-keys", responses=errors(401, 403))
def list_api_keys(meter: Meter, _: Superadmin) -> Page[ApiKeyOut]:
    """Every API key, revoked ones included, oldest first; never their secrets."""
    return Page(data=[ApiKeyOut.of(k) for k in meter.api_keys()], next_cursor=None)


@router.delete(
    "/api-keys/{key_id}", status_code=204, response_class=Response, responses=errors(401, 403, 404)
)
def revoke_api_key(
    key_id: Annotated[str, Path(max_length=255)], meter: Meter, caller: Superadmin
) -> None:
    """Revoke a key: from now on it gets 401. Revoking it again changes nothing."""
    meter.revoke_api_key(key_id, actor=actor(caller))
