"""Server configuration, from ``CREDITMETER_*`` environment variables."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditmeter.store.database import DEFAULT_URL


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITMETER_", extra="ignore")

    database_url: str = DEFAULT_URL
    """SQLAlchemy URL of the database; a SQLite file in the working directory by default."""
    admin_key: SecretStr | None = None
    """Accepted as a superadmin key as given, so a fresh server can be driven at once."""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    log_level: str = "info"
    pool_size: int = 10
    sweep_interval: float = 30.0
    """Seconds between sweeps of idle accounts (expired holds, period ends); 0: none."""
