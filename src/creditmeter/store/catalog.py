"""SQL for the price book (features, versioned) and plans."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from creditmeter.core.plans import Plan, plan_from_json, plan_to_json
from creditmeter.core.pricing import Feature, rule_from_json, rule_to_json
from creditmeter.core.types import FeatureKey, PlanKey
from creditmeter.store.tables import catalog_version, feature_versions, features, plans


def _feature(row: RowMapping) -> Feature:
    return Feature(
        key=row["key"],
        name=row["name"],
        pool=row["pool"],
        rule=rule_from_json(row["rule"]),
        version=row["version"],
    )


_GET_FEATURE = sa.select(features).where(features.c.key == sa.bindparam("the_key"))
_GET_PLAN = sa.select(plans).where(plans.c.key == sa.bindparam("the_key"))


def get_feature(conn: Connection, key: FeatureKey) -> Feature | None:
    row = conn.execute(_GET_FEATURE, {"the_key": key}).mappings().first()
    return None if row is None else _feature(row)


def get_feature_version(conn: Connection, key: FeatureKey, version: int) -> Feature | None:
    fv = feature_versions.c
    query = sa.select(feature_versions).where(fv.key == key, fv.version == version)
    row = conn.execute(query).mappings().first()
    return None if row is None else _feature(row)


def list_features(conn: Connection) -> list[Feature]:
    return [
        _feature(r) for r in conn.execute(sa.select(features).order_by(features.c.key)).mappings()
    ]


def put_feature(conn: Connection, feature: Feature, at: datetime) -> Feature:
    """Store a new version of a feature; an unchanged feature keeps its version."""
    current = get_feature(conn, feature.key)
    if current is not None and (current.name, current.pool, current.rule) == (
        feature.name,
        feature.pool,
        feature.rule,
    ):
        return current
    version = 1 if current is None else current.version + 1
    values = {
        "name": feature.name,
        "pool": feature.pool,
        "rule": rule_to_json(feature.rule),
        "version": version,
    }
    if current is None:
        conn.execute(features.insert().values(key=feature.key, updated_at=at, **values))
    else:
        conn.execute(
            features.update()
            .where(features.c.key == feature.key, features.c.version == current.version)
            .values(updated_at=at, **values)
        )
    conn.execute(
        feature_versions.insert().values(
            key=feature.key,
            version=version,
            name=feature.name,
            pool=feature.pool,
            rule=values["rule"],
            valid_from=at,
        )
    )
    _changed(conn)
    return Feature(feature.key, feature.name, feature.pool, feature.rule, version)


def _plan(row: RowMapping) -> Plan:
    return plan_from_json(
        row["key"],
        {
            "name": row["name"],
            "allowances": row["allowances"],
            "features": row["features"],
            "period": row["period"],
            "rollover_cap": row["rollover_cap"],
        },
    )


def get_plan(conn: Connection, key: PlanKey) -> Plan | None:
    row = conn.execute(_GET_PLAN, {"the_key": key}).mappings().first()
    return None if row is None else _plan(row)


def list_plans(conn: Connection) -> list[Plan]:
    return [_plan(r) for r in conn.execute(sa.select(plans).order_by(plans.c.key)).mappings()]


def put_plan(conn: Connection, plan: Plan, at: datetime) -> None:
    data = plan_to_json(plan)
    values = {
        "name": plan.name,
        "allowances": data["allowances"],
        "features": data["features"],
        "period": plan.period.value,
        "rollover_cap": plan.rollover_cap,
        "updated_at": at,
    }
    updated = conn.execute(
        plans.update().where(plans.c.key == plan.key).values(version=plans.c.version + 1, **values)
    )
    if updated.rowcount == 0:
        conn.execute(plans.insert().values(key=plan.key, version=1, **values))
    _changed(conn)


_BUMP = catalog_version.update().values(version=catalog_version.c.version + 1)


def _changed(conn: Connection) -> None:
    """A feature or a plan changed: what use cases remember of the catalog is stale."""
    conn.execute(_BUMP)
