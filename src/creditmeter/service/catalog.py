"""The price book and the plans."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.engine import Connection

from creditmeter.core.audit import Action, Actor
from creditmeter.core.errors import InvalidRequest
from creditmeter.core.identifiers import identifier
from creditmeter.core.plans import Plan, plan_from_json, plan_to_json
from creditmeter.core.pricing import Feature, rule_from_json, rule_to_json
from creditmeter.core.types import ANY_POOL
from creditmeter.service import audit, settings
from creditmeter.store import catalog


def _pool(pool: str) -> str:
    return pool if pool == ANY_POOL else identifier(pool, "a pool")


def put_feature(
    conn: Connection,
    now: datetime,
    key: str,
    *,
    name: str | None,
    pool: str | None,
    rule: Mapping[str, object],
    actor: Actor,
) -> Feature:
    if rule.get("multiplier") is None:
        multiplier = settings.current(conn).default_multiplier if rule.get("cost_plus") else 1
        rule = {**rule, "multiplier": multiplier}
    feature = Feature(
        key=identifier(key, "a feature key"),
        name=name or key,
        pool=_pool(pool or key),
        rule=rule_from_json(rule),
    )
    stored = catalog.put_feature(conn, feature, now)
    details = {
        "name": stored.name,
        "pool": stored.pool,
        "rule": rule_to_json(stored.rule),
        "version": stored.version,
    }
    audit.record(conn, now, actor, Action.FEATURE_PUT, subject_id=stored.key, details=details)
    return stored


def put_plan(
    conn: Connection, now: datetime, key: str, data: Mapping[str, object], actor: Actor
) -> Plan:
    unknown = set(data) - {"name", "allowances", "features", "period", "rollover_cap"}
    if unknown:
        raise InvalidRequest(f"unknown plan fields: {', '.join(sorted(unknown))}")
    plan = plan_from_json(identifier(key, "a plan key"), data)
    catalog.put_plan(conn, plan, now)
    audit.record(conn, now, actor, Action.PLAN_PUT, subject_id=plan.key, details=plan_to_json(plan))
    return plan
