"""The price book's model prices: imported from the price catalogue as new versions."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy.engine import Connection

from creditmeter.core.audit import Action, Actor
from creditmeter.core.errors import NotFound
from creditmeter.core.models import (
    ModelPrice,
    PriceBookVersion,
    catalogue_prices,
    catalogue_source,
)
from creditmeter.service import audit
from creditmeter.store import prices


def sync(
    conn: Connection, now: datetime, providers: Collection[str] | None, actor: Actor
) -> PriceBookVersion:
    """A new version with the catalogue's prices of ``providers`` (default: all of them)
    and the latest version's prices of every other provider; the latest version itself
    when that changes nothing."""
    current = prices.latest(conn)
    imported = catalogue_prices(now, providers)
    synced = None if providers is None else tuple(sorted(set(providers)))
    kept: list[ModelPrice] = []
    if current is not None and synced is not None:
        kept = [p for p in prices.prices(conn, current.version) if p.provider not in synced]
    new = sorted([*kept, *imported])
    if current is not None and new == prices.prices(conn, current.version):
        result, created = current, False
    else:
        version = 1 if current is None else current.version + 1
        result = PriceBookVersion(version, catalogue_source(), synced, len(new), now)
        prices.add(conn, result, new)
        created = True
    details = {
        "version": result.version,
        "created": created,
        "source": catalogue_source(),
        "providers": None if synced is None else list(synced),
        "prices": result.prices,
    }
    audit.record(
        conn, now, actor, Action.PRICES_SYNCED, subject_id=str(result.version), details=details
    )
    return result


def model_prices(
    conn: Connection, version: int | None, provider: str | None, model: str | None
) -> tuple[PriceBookVersion | None, list[ModelPrice]]:
    """A version (default: the latest) and its prices, of one provider or model if asked."""
    found = prices.latest(conn) if version is None else prices.get(conn, version)
    if found is None:
        if version is not None:
            raise NotFound("price book version", str(version))
        return None, []
    return found, prices.prices(conn, found.version, provider=provider, model=model)
