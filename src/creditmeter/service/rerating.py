"""Re-rating: past usage of cost-plus features priced under another price-book version."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import Connection

from creditmeter.core.errors import InvalidRequest, NotFound
from creditmeter.core.models import catalogue_model
from creditmeter.core.pricing import Feature, price_cost_plus
from creditmeter.core.records import UsageRecord
from creditmeter.core.rerating import RerateLine, RerateReport
from creditmeter.core.settings import Settings, settings_from_json
from creditmeter.store import catalog, prices, usage
from creditmeter.store import settings as settings_store

TOTAL = "total"


def report(
    conn: Connection, since: datetime, until: datetime, version: int, account_id: str | None
) -> RerateReport:
    """What the usage records from ``since`` until ``until`` would be rated at under
    price-book ``version``, each with the multiplier and credits per USD it was rated
    with, beside what they were rated at."""
    if since >= until:
        raise InvalidRequest("since must be before until")
    if prices.get(conn, version) is None:
        raise NotFound("price book version", str(version))
    by_unit: dict[str, dict[str, Decimal]] = {}
    for p in prices.prices(conn, version):
        by_unit.setdefault(f"{p.provider}:{p.model}", {})[p.unit] = p.usd_per_million
    features: dict[tuple[str, int], Feature | None] = {}
    history = [
        (h["changed_at"], settings_from_json(h["values"])) for h in settings_store.history(conn)
    ]
    accounts: dict[str, RerateLine] = {}
    models: dict[str, RerateLine] = {}
    total = RerateLine(TOTAL)
    hand_rated = unpriced = 0
    for record in usage.in_window(conn, since, until, account_id):
        if record.price_book_version is None or record.provider_cost is None:
            hand_rated += 1
            continue
        rerated = _rerate(conn, record, features, _settings_at(history, record.created_at), by_unit)
        if rerated is None:
            unpriced += 1
            continue
        credits, cost = rerated
        line = (record.credits, credits, record.provider_cost, cost)
        account = accounts.get(record.account_id, RerateLine(record.account_id))
        accounts[record.account_id] = account.add(*line)
        model = models.get(str(record.model), RerateLine(str(record.model)))
        models[str(record.model)] = model.add(*line)
        total = total.add(*line)
    return RerateReport(
        version,
        since,
        until,
        [accounts[k] for k in sorted(accounts)],
        [models[k] for k in sorted(models)],
        total,
        hand_rated,
        unpriced,
    )


def _rerate(
    conn: Connection,
    record: UsageRecord,
    features: dict[tuple[str, int], Feature | None],
    settings: Settings,
    by_unit: dict[str, dict[str, Decimal]],
) -> tuple[int, Decimal] | None:
    """The record's credits and provider cost under the version's prices; ``None`` when
    the version cannot price it."""
    key = (record.feature, record.feature_version)
    if key not in features:
        features[key] = catalog.get_feature_version(conn, *key)
    feature = features[key]
    known = None if record.model is None else catalogue_model(record.model)
    if feature is None or known is None:
        return None
    try:
        priced = price_cost_plus(
            feature, record.quantities, record.model, by_unit.get(known), settings.credits_per_usd
        )
    except InvalidRequest:
        return None
    return priced.credits, priced.provider_cost


def _settings_at(history: list[tuple[datetime, Settings]], moment: datetime) -> Settings:
    """The settings in force at ``moment``; ``history`` is newest first."""
    return next((s for changed_at, s in history if changed_at <= moment), Settings())
