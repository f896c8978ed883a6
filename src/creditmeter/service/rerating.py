"""Re-rating: past usage of cost-plus features priced under another price-book version,
and the difference booked as adjustments when asked."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import Connection

from creditmeter.core.audit import Action, Actor
from creditmeter.core.errors import AlreadyRerated, InvalidRequest, NotFound
from creditmeter.core.grants import consumption_order, merge_draws, plan_draws
from creditmeter.core.ids import new_id
from creditmeter.core.models import catalogue_model
from creditmeter.core.pricing import Feature, price_cost_plus
from creditmeter.core.records import Posting, Transaction, UsageRecord
from creditmeter.core.rerating import RerateBooking, RerateLine, RerateReport
from creditmeter.core.settings import Settings, settings_from_json
from creditmeter.core.types import ANY_POOL, GrantSource, SystemAccount, TransactionType
from creditmeter.service import audit as audit_service
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.maintenance import repay_debt
from creditmeter.service.unit_of_work import IdempotencyKey, UnitOfWork
from creditmeter.store import catalog, ledger, prices, usage
from creditmeter.store import settings as settings_store
from creditmeter.store.grants import Change as GrantChange

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
    versions: dict[str, set[int]] = {}
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
        versions.setdefault(record.account_id, set()).add(record.price_book_version)
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
        {k: tuple(sorted(v)) for k, v in sorted(versions.items())},
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


def apply(
    uow: UnitOfWork,
    start: datetime,
    end: datetime,
    to_version: int,
    account: str | None,
    key: IdempotencyKey[RerateBooking] | None,
    actor: Actor,
) -> RerateBooking:
    """Book what :func:`report` says, each account's difference as one transaction, all
    in one unit of work; the first booking of ``key`` if it was used before."""
    first = uow.replay(key)
    if first is not None:
        return first
    found = report(uow.conn, start, end, to_version, account)
    lines = {line.key: line for line in found.accounts if line.difference}
    booking_id = new_id("rrt")
    locked, _ = uow.lock_many(list(lines))
    # A retry that waited for the locks of the call it repeats finds its result.
    first = uow.replay(key)
    if first is not None:
        return first
    settings = uow.settings
    booked: list[Transaction] = []
    for account_id in sorted(lines):
        locked_account = locked[account_id]
        txn = book_difference(locked_account, found, lines[account_id], booking_id)
        booked.append(txn)
        details = {
            "rerate": booking_id,
            "version": to_version,
            "since": start.isoformat(),
            "until": end.isoformat(),
            "amount": txn.amount,
        }
        audit_service.record(
            uow.conn,
            uow.now,
            actor,
            Action.RERATE_BOOKED,
            account_id=account_id,
            subject_id=txn.id,
            details=details,
        )
        uow.check_alerts(locked_account, settings)
        uow.save(locked_account)
    booking = RerateBooking(booking_id, to_version, start, end, account, tuple(booked))
    if key is not None:
        uow.remember(key, booking)
    return booking


def book_difference(
    account: LockedAccount, report: RerateReport, line: RerateLine, booking_id: str
) -> Transaction:
    """The account's re-rated difference as one ``adjustment`` transaction: an
    under-charge drawn from its grants in consumption order (the rest taken on as debt, as
    a clawback of spent credits is) into consumption; an over-charge out of consumption
    into a new ``refund`` grant of every pool, which repays debt first. Refused if a
    re-rating of this account was booked for a window that overlaps this one."""
    _refuse_overlap(account, report)
    owed = line.difference
    metadata = {
        "rerate": booking_id,
        "version": report.version,
        "rated_versions": list(report.rated_versions.get(account.id, ())),
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "records": line.records,
        "credits": line.credits,
        "rerated_credits": line.rerated_credits,
    }
    window = f"usage from {report.since.isoformat()} until {report.until.isoformat()}"
    if owed > 0:
        ordered = consumption_order(account.grants, None, account.now)
        draws, debt = plan_draws(ordered, owed)
        merged = merge_draws(draws)
        legs = [Posting(account.wallet, -d.credits, d.grant_id) for d in merged]
        legs += [Posting(account.wallet, -debt), Posting(SystemAccount.CONSUMPTION.value, owed)]
        changes = {d.grant_id: GrantChange(remaining=-d.credits) for d in merged}
        return account.post(
            TransactionType.ADJUSTMENT,
            legs,
            changes,
            f"{owed} credits under-charged: {window} re-rated under price book version "
            f"{report.version}",
            metadata=metadata | {"debt": debt},
        )
    given = -owed
    g = account.open_grant(GrantSource.REFUND, pool=ANY_POOL, reference=f"rerate:{booking_id}")
    txn = account.post(
        TransactionType.ADJUSTMENT,
        [Posting(SystemAccount.CONSUMPTION.value, -given), Posting(account.wallet, given, g.id)],
        {g.id: GrantChange(remaining=given, amount=given)},
        f"{given} credits over-charged, given back: {window} re-rated under price book "
        f"version {report.version}",
        metadata=metadata | {"debt": 0},
    )
    repay_debt(account, [g.id])
    return txn


def _refuse_overlap(account: LockedAccount, report: RerateReport) -> None:
    """Refuse a second booking of the account's usage: its adjustments (read with its row
    locked, so two bookings cannot both miss each other) name the windows re-rated."""
    for txn in ledger.page(
        account.conn, account.id, types=[TransactionType.ADJUSTMENT], limit=10_000
    ):
        since = datetime.fromisoformat(txn.metadata["since"])
        until = datetime.fromisoformat(txn.metadata["until"])
        if since < report.until and report.since < until:
            raise AlreadyRerated(
                f"account {account.id!r}: usage from {since.isoformat()} until "
                f"{until.isoformat()} was re-rated under price book version "
                f"{txn.metadata['version']} and booked ({txn.id}, re-rating "
                f"{txn.metadata['rerate']}): a window is booked once"
            )
