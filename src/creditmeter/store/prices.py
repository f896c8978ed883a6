"""SQL for the price book's versions of model prices: each version written once, whole,
and never changed."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from creditmeter.core.models import ModelPrice, PriceBookVersion
from creditmeter.store.tables import catalog_version, model_prices, price_book_versions


def _version(row: RowMapping) -> PriceBookVersion:
    providers = row["providers"]
    return PriceBookVersion(
        version=row["version"],
        source=row["source"],
        providers=None if providers is None else tuple(providers),
        prices=row["prices"],
        created_at=row["created_at"],
    )


def latest(conn: Connection) -> PriceBookVersion | None:
    query = sa.select(price_book_versions).order_by(price_book_versions.c.version.desc())
    row = conn.execute(query.limit(1)).mappings().first()
    return None if row is None else _version(row)


def get(conn: Connection, version: int) -> PriceBookVersion | None:
    query = sa.select(price_book_versions).where(price_book_versions.c.version == version)
    row = conn.execute(query).mappings().first()
    return None if row is None else _version(row)


def versions(conn: Connection) -> list[PriceBookVersion]:
    query = sa.select(price_book_versions).order_by(price_book_versions.c.version)
    return [_version(r) for r in conn.execute(query).mappings()]


def prices(
    conn: Connection, version: int, *, provider: str | None = None, model: str | None = None
) -> list[ModelPrice]:
    p = model_prices.c
    query = sa.select(p.provider, p.model, p.unit, p.usd_per_million).where(p.version == version)
    if provider is not None:
        query = query.where(p.provider == provider)
    if model is not None:
        query = query.where(p.model == model)
    rows = conn.execute(query.order_by(p.provider, p.model, p.unit))
    return [ModelPrice(*row) for row in rows]


def add(
    conn: Connection,
    version: PriceBookVersion,
    new: Sequence[ModelPrice],
) -> None:
    conn.execute(
        price_book_versions.insert().values(
            version=version.version,
            source=version.source,
            providers=None if version.providers is None else list(version.providers),
            prices=version.prices,
            created_at=version.created_at,
        )
    )
    # What use cases remember of the price book, as of the catalog's version, is stale.
    conn.execute(catalog_version.update().values(version=catalog_version.c.version + 1))
    if new:
        conn.execute(
            model_prices.insert(),
            [
                {
                    "version": version.version,
                    "provider": m.provider,
                    "model": m.model,
                    "unit": m.unit,
                    "usd_per_million": m.usd_per_million,
                }
                for m in new
            ],
        )
