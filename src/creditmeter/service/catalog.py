"""The price book and the plans."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.engine import Connection

from creditmeter.core.errors import InvalidRequest
from creditmeter.core.plans import Plan, plan_from_json
from creditmeter.core.pricing import Feature, rule_from_json
from creditmeter.store import catalog

MAX_KEY_LENGTH = 255


def _key(key: object, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(f"a {what} key is a non-empty string of at most 255 characters")
    return key


def put_feature(
    conn: Connection,
    now: datetime,
    key: str,
    *,
    name: str | None,
    pool: str | None,
    rule: Mapping[str, object],
) -> Feature:
    feature = Feature(
        key=_key(key, "feature"),
        name=name or key,
        pool=_key(pool or key, "pool"),
        rule=rule_from_json(rule),
    )
    return catalog.put_feature(conn, feature, now)


def put_plan(conn: Connection, now: datetime, key: str, data: Mapping[str, object]) -> Plan:
    unknown = set(data) - {"name", "allowances", "features", "period", "rollover_cap"}
    if unknown:
        raise InvalidRequest(f"unknown plan fields: {', '.join(sorted(unknown))}")
    plan = plan_from_json(_key(key, "plan"), data)
    catalog.put_plan(conn, plan, now)
    return plan
