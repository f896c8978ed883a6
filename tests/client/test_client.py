"""The client against a live ``creditmeter serve``, on SQLite and PostgreSQL: the library's
verbs, records and errors, over HTTP."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal

import httpx2
import pytest

from creditmeter import (
    AccountSuspended,
    CreditMeter,
    FeatureNotInPlan,
    GrantHeld,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    UnknownModel,
    UsageEvent,
)
from creditmeter.client import (
    AuthenticationFailed,
    CreditMeterClient,
    HeldOperation,
    PermissionDenied,
    ServiceUnavailable,
)
from creditmeter.core.audit import Action, ActorKind
from creditmeter.core.errors import AllowanceState
from creditmeter.core.keys import Role
from creditmeter.core.payments import PurchaseStatus
from creditmeter.core.pricing import UnknownModels
from creditmeter.core.records import Charge
from creditmeter.core.types import AccountStatus, GrantSource, HoldStatus, TransactionType
from creditmeter.service import webhooks
from creditmeter.store import outbox
from creditmeter.store.outbox import Job
from tests.client.conftest import Server, free_port


class Failed(Exception):
    pass


@pytest.fixture
def priced(admin: CreditMeterClient) -> CreditMeterClient:
    """The price book and the plans, put through the client (putting them again unchanged
    keeps their versions, so every test may)."""
    admin.put_feature("csv_export", name="CSV export", rates={"calls": 5})
    admin.put_feature(
        "llm.chat",
        name="LLM chat",
        rates={"input_tokens": "0.25", "output_tokens": 1},
        models={"gpt-4o": {"input_tokens": Decimal("0.5"), "output_tokens": 2}},
        multiplier="1.5",
    )
    admin.put_feature("image.generate", rates={"images_512": 40, "images_1024": 100})
    admin.put_plan("starter", allowances={"*": 1_000}, features=["csv_export"])
    admin.put_plan("pro", name="Pro", allowances={"*": 3_000})
    admin.put_plan("enterprise", allowances={"*": None})
    return admin


@pytest.fixture
def service(server: Server, priced: CreditMeterClient) -> Iterator[CreditMeterClient]:
    """A client with a service key made through the admin client."""
    _, secret = priced.create_api_key("service", name="backend")
    with CreditMeterClient(server.url, secret) as client:
        yield client


@pytest.fixture
def acme(service: CreditMeterClient, fresh_id: str) -> str:
    """An account on pro (3,000 a month) with 5,000 purchased credits."""
    service.create_account(fresh_id, name="Acme Inc.", plan="pro")
    return fresh_id


def buy(admin: CreditMeterClient, account: str, credits: int = 5_000) -> None:
    admin.grant(account, credits, source="purchase", reason="credit pack")


def test_the_catalog_comes_back_as_the_library_records(
    priced: CreditMeterClient, library: CreditMeter
) -> None:
    assert priced.features() == library.features()
    assert priced.plans() == library.plans()
    chat = next(f for f in priced.features() if f.key == "llm.chat")
    assert chat.rule.multiplier == Decimal("1.5")
    assert chat.rule.models["gpt-4o"] == {
        "input_tokens": Decimal("0.5"),
        "output_tokens": Decimal(2),
    }
    assert all(isinstance(r, Decimal) for r in chat.rule.rates.values())
    enterprise = next(p for p in priced.plans() if p.key == "enterprise")
    assert enterprise.allowances == {"*": None}


def test_authorize_then_settle(
    service: CreditMeterClient, admin: CreditMeterClient, acme: str, library: CreditMeter
) -> None:
    buy(admin, acme)
    estimate = {"input_tokens": 2_000, "output_tokens": 1_000}
    hold = service.authorize(
        acme, "llm.chat", estimate=estimate, model="gpt-4o", ttl=timedelta(minutes=5)
    )
    assert (hold.account_id, hold.feature, hold.status) == (acme, "llm.chat", HoldStatus.PENDING)
    assert hold.reserved == 4_500
    assert hold.expires_at - hold.created_at == timedelta(minutes=5)
    assert service.balance(acme).held == 4_500
    assert service.hold(hold.id) == library.hold(hold.id)

    charge = service.settle(
        hold.id,
        usage={"input_tokens": 1_000, "output_tokens": 500},
        member="ann",
        provider_cost=Decimal("0.0125"),
        idempotency_key=f"settle-{hold.id}",
    )
    assert isinstance(charge, Charge)
    assert (charge.credits, charge.charged, charge.debited) == (2_250, 2_250, 0)
    assert charge.available_after == 8_000 - 2_250
    assert charge.hold_id == hold.id
    assert charge.account_id == acme

    settled = service.hold(hold.id)
    assert settled.status is HoldStatus.SETTLED
    assert settled.usage_id == charge.usage_id
    balance = service.balance(acme)
    assert (balance.available, balance.held) == (5_750, 0)
    assert balance == library.balance(acme)

    again = service.settle(
        hold.id,
        usage={"input_tokens": 1_000, "output_tokens": 500},
        member="ann",
        provider_cost=Decimal("0.0125"),
        idempotency_key=f"settle-{hold.id}",
    )
    assert again == charge
    with pytest.raises(HoldNotPending) as not_pending:
        service.settle(hold.id, usage={"input_tokens": 1})
    assert (not_pending.value.hold_id, not_pending.value.status) == (hold.id, "settled")

    latest = service.transactions(acme, limit=1).data[0]
    assert latest.id == charge.transaction_id
    assert latest.type is TransactionType.USAGE
    assert latest.by_grant_source() == {GrantSource.ALLOWANCE: -2_250}
    assert latest == library.transactions(acme, limit=1).data[0]


def test_a_one_shot_charge_split_across_grants_and_replayed(
    service: CreditMeterClient, admin: CreditMeterClient, acme: str, library: CreditMeter
) -> None:
    buy(admin, acme)
    charge = service.charge(
        acme,
        "image.generate",
        usage={"images_1024": 35},
        metadata={"batch": "b1"},
        idempotency_key=f"images-{acme}",
    )
    assert (charge.credits, charge.charged, charge.available_after) == (3_500, 3_500, 4_500)
    assert charge.hold_id is None
    assert charge.would_refuse is None
    replay = service.charge(
        acme,
        "image.generate",
        usage={"images_1024": 35},
        metadata={"batch": "b1"},
        idempotency_key=f"images-{acme}",
    )
    assert replay == charge
    assert service.balance(acme).available == 4_500

    txn = next(service.iter_transactions(acme, types=("usage",)))
    assert txn.by_grant_source() == {GrantSource.ALLOWANCE: -3_000, GrantSource.PURCHASE: -500}

    (record,) = service.usage(acme).data
    assert record.id == charge.usage_id
    assert record.quantities == {"images_1024": 35}
    assert record == library.usage_record(charge.usage_id)


def test_a_dated_model_is_priced_as_its_model_and_an_unknown_one_is_refused(
    service: CreditMeterClient, admin: CreditMeterClient, acme: str
) -> None:
    buy(admin, acme)
    turn = {"input_tokens": 384, "output_tokens": 250}

    dated = service.charge(acme, "llm.chat", usage=turn, model="gpt-4o-2024-08-06")
    with pytest.raises(UnknownModel) as refused:
        service.charge(acme, "llm.chat", usage=turn, model="gpt-4.1")
    lenient = admin.put_feature(
        "llm.lenient",
        rates={"input_tokens": "0.25", "output_tokens": 1},
        models={"gpt-4o": {"input_tokens": "0.5", "output_tokens": 2}},
        multiplier="1.5",
        unknown_models="default_rates",
    )
    flagged = service.charge(acme, "llm.lenient", usage=turn, model="gpt-4.1")

    assert dated.credits == 1_038
    assert (refused.value.model, refused.value.feature) == ("gpt-4.1", "llm.chat")
    assert lenient.rule.unknown_models is UnknownModels.DEFAULT_RATES
    assert flagged.credits == 519
    [record] = service.usage(acme, feature="llm.lenient").data
    assert (record.id, record.unknown_model) == (flagged.usage_id, True)


def test_model_prices_sync_and_read_as_the_library_records(
    admin: CreditMeterClient, service: CreditMeterClient, library: CreditMeter
) -> None:
    version = admin.sync_prices(["anthropic"])

    assert admin.price_book_versions() == library.price_book_versions()
    assert library.price_book_versions()[-1] == version
    found, sonnet = admin.model_prices(provider="anthropic", model="claude-sonnet-4-0")
    assert (found, sonnet) == library.model_prices(provider="anthropic", model="claude-sonnet-4-0")
    assert {p.unit: p.usd_per_million for p in sonnet}["output_tokens"] == Decimal(15)
    with pytest.raises(PermissionDenied):
        service.sync_prices()


def test_a_cost_plus_feature_through_the_client(
    admin: CreditMeterClient, service: CreditMeterClient, acme: str
) -> None:
    buy(admin, acme)
    admin.sync_prices(["openai"])
    feature = admin.put_feature("llm.cost", cost_plus=True, multiplier="1.5")

    charge = service.charge(
        acme, "llm.cost", usage={"input_tokens": 384, "output_tokens": 250}, model="gpt-4o"
    )

    assert feature.rule.cost_plus is True
    assert charge.credits == 6
    [record] = service.usage(acme, feature="llm.cost").data
    assert record.provider_cost == Decimal("0.00346")
    assert record.price_book_version == admin.price_book_versions()[-1].version


def test_a_re_rating_report_through_the_client_is_the_library_s(
    admin: CreditMeterClient, library: CreditMeter, acme: str
) -> None:
    buy(admin, acme)
    version = admin.sync_prices(["openai"])
    admin.put_feature("llm.cost", cost_plus=True, multiplier="1.5")
    charge = library.charge(acme, "llm.cost", usage={"input_tokens": 384}, model="gpt-4o")
    at = library.usage_record(charge.usage_id).created_at
    until, to = at + timedelta(seconds=1), version.version

    report = admin.rerate(since=at, until=until, to_version=to, account=acme)

    assert report == library.rerate(since=at, until=until, to_version=to, account=acme)
    assert (report.total.records, report.total.provider_cost) == (1, Decimal("0.00096"))
    # Under the version it was rated with, the usage re-rates at what it was: nothing to book.
    booking = admin.apply_rerate(since=at, until=until, to_version=to, idempotency_key="rr")
    assert (booking.version, booking.account, booking.transactions) == (to, None, ())
    assert admin.apply_rerate(since=at, until=until, to_version=to, idempotency_key="rr") == booking


def test_a_refusal_for_too_few_credits_carries_the_figures(
    service: CreditMeterClient, admin: CreditMeterClient, acme: str
) -> None:
    buy(admin, acme, 1_000)
    service.charge(acme, "csv_export", usage={"calls": 600})  # the allowance: 3,000
    with pytest.raises(InsufficientCredits) as refused:
        service.authorize(acme, "llm.chat", model="gpt-4o", estimate={"output_tokens": 1_000})
    error = refused.value
    assert (error.required, error.available, error.purchased_available) == (3_000, 1_000, 1_000)
    assert error.allowance == AllowanceState(used=3_000, limit=3_000, percentage=100)
    assert error.message == "3000 credits required, 1000 available"
    with pytest.raises(InsufficientCredits):
        service.charge(acme, "csv_export", usage={"calls": 201})
    assert service.balance(acme).available == 1_000
    assert service.balance(acme).held == 0


def test_not_found_names_what_is_missing(service: CreditMeterClient) -> None:
    with pytest.raises(NotFound) as missing:
        service.balance("nobody")
    assert (missing.value.kind, missing.value.key) == ("account", "nobody")
    assert missing.value.message == "account 'nobody' not found"
    with pytest.raises(NotFound) as no_hold:
        service.release("hold_nothing")
    assert (no_hold.value.kind, no_hold.value.key) == ("hold", "hold_nothing")


def test_conflicts_are_409s(
    service: CreditMeterClient, admin: CreditMeterClient, acme: str
) -> None:
    buy(admin, acme)
    service.charge(acme, "csv_export", idempotency_key=f"k-{acme}")
    with pytest.raises(IdempotencyConflict) as conflict:
        service.charge(acme, "csv_export", usage={"calls": 2}, idempotency_key=f"k-{acme}")
    assert conflict.value.key == f"k-{acme}"
    hold = service.authorize(acme, "csv_export")
    service.release(hold.id)
    with pytest.raises(HoldNotPending) as released:
        service.release(hold.id)
    assert released.value.status == "released"


def test_refusals_by_plan_and_by_status(
    service: CreditMeterClient, admin: CreditMeterClient, fresh_id: str
) -> None:
    service.create_account(fresh_id, plan="starter")
    with pytest.raises(FeatureNotInPlan) as outside:
        service.charge(fresh_id, "llm.chat", usage={"output_tokens": 10})
    assert (outside.value.feature, outside.value.plan) == ("llm.chat", "starter")
    suspended = admin.update_account(fresh_id, status="suspended")
    assert suspended.status is AccountStatus.SUSPENDED
    with pytest.raises(AccountSuspended) as refused:
        service.charge(fresh_id, "csv_export")
    assert (refused.value.account_id, refused.value.status) == (fresh_id, "suspended")


def test_an_account_key_sees_its_own_account_only(
    server: Server,
    admin: CreditMeterClient,
    service: CreditMeterClient,
    acme: str,
    fresh_id: str,
) -> None:
    other = f"{fresh_id}-other"
    service.create_account(other, plan="pro")
    key, secret = admin.create_api_key("account", account_id=acme, name="acme dashboard")
    assert (key.role, key.account_id, key.name) == (Role.ACCOUNT, acme, "acme dashboard")
    assert secret.startswith(key.prefix)
    with CreditMeterClient(server.url, secret) as own:
        assert own.balance(acme).available == 3_000
        assert own.account(acme).name == "Acme Inc."
        with pytest.raises(NotFound) as hidden:
            own.balance(other)
        assert (hidden.value.kind, hidden.value.key) == ("account", other)
        with pytest.raises(NotFound):
            own.transactions(other)
        with pytest.raises(PermissionDenied) as denied:
            own.charge(acme, "csv_export")
        assert denied.value.status == 403
    admin.revoke_api_key(key.id)
    with CreditMeterClient(server.url, secret) as revoked, pytest.raises(AuthenticationFailed):
        revoked.balance(acme)
    assert next(k for k in admin.api_keys() if k.id == key.id).revoked_at is not None


def test_holding_releases_the_hold_when_the_block_fails(
    service: CreditMeterClient, acme: str
) -> None:
    held: list[HeldOperation] = []

    def fail_while_holding() -> None:
        estimate = {"output_tokens": 500}
        with service.holding(acme, "llm.chat", model="gpt-4o", estimate=estimate) as call:
            held.append(call)
            assert service.balance(acme).held == 1_500
            raise Failed

    with pytest.raises(Failed):
        fail_while_holding()
    (call,) = held
    assert service.hold(call.hold.id).status is HoldStatus.RELEASED
    balance = service.balance(acme)
    assert (balance.available, balance.held) == (3_000, 0)

    with service.holding(acme, "llm.chat", model="gpt-4o", estimate={"output_tokens": 500}) as ok:
        ok.settle(usage={"output_tokens": 100})
    assert ok.charge is not None
    assert ok.charge.credits == 300
    with service.holding(acme, "csv_export", credits=7) as estimate_only:
        pass
    assert estimate_only.charge is not None
    assert estimate_only.charge.credits == 7
    assert service.balance(acme).available == 3_000 - 300 - 7


def test_grants_refunds_and_the_ledger(
    service: CreditMeterClient, admin: CreditMeterClient, acme: str, library: CreditMeter
) -> None:
    granted = admin.grant(
        acme, 700, source="promotional", reason="launch week", idempotency_key=f"g-{acme}"
    )
    assert (
        admin.grant(
            acme, 700, source="promotional", reason="launch week", idempotency_key=f"g-{acme}"
        )
        == granted
    )
    assert granted.available_after == 3_700
    charge = service.charge(acme, "image.generate", usage={"images_512": 10})
    refund = admin.refund(acme, usage_id=charge.usage_id, reason="failed batch")
    assert refund.type is TransactionType.REFUND
    assert refund.amount == 400
    assert service.balance(acme).available == 3_700
    with pytest.raises(PermissionDenied):
        service.grant(acme, 1)
    with pytest.raises(InvalidRequest):
        admin.refund(acme)

    assert admin.grants(acme) == library.grants(acme)
    assert {g.source for g in admin.grants(acme)} == {
        GrantSource.ALLOWANCE,
        GrantSource.PROMOTIONAL,
    }
    everything = list(service.iter_transactions(acme))
    assert everything == list(library.iter_transactions(acme))
    assert [t.type for t in everything] == [
        TransactionType.REFUND,
        TransactionType.USAGE,
        TransactionType.GRANT,
        TransactionType.ALLOCATION,
    ]
    first, second = service.transactions(acme, limit=2), None
    assert first.next_cursor is not None
    second = service.transactions(acme, limit=2, cursor=first.next_cursor)
    assert [*first.data, *second.data] == everything
    out = io.StringIO()
    assert service.export_transactions_csv(acme, out) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["id"] for r in rows] == [t.id for t in everything]


def test_voiding_a_grant_and_a_balancing_hold(
    service: CreditMeterClient, admin: CreditMeterClient, acme: str, library: CreditMeter
) -> None:
    promo = admin.grant(acme, 700, source="promotional").grant_id
    hold = service.authorize(acme, "llm.chat", credits=3_100)  # the allowance, 100 of promo
    with pytest.raises(GrantHeld) as held:
        admin.void_grant(acme, promo, reason="sent by mistake")
    assert (held.value.grant_id, held.value.holds) == (promo, (hold.id,))
    with pytest.raises(PermissionDenied):
        service.void_grant(acme, promo, reason="sent by mistake", held="release")

    key = f"void-{acme}"
    void = admin.void_grant(
        acme, promo, reason="sent by mistake", held="release", idempotency_key=key
    )
    again = admin.void_grant(
        acme, promo, reason="sent by mistake", held="release", idempotency_key=key
    )

    assert again == void
    assert (void.type, void.amount) == (TransactionType.VOID, -700)
    assert void == next(library.iter_transactions(acme, types=("void",)))
    assert service.hold(hold.id).status is HoldStatus.RELEASED
    [voided] = [g for g in admin.grants(acme, include_spent=True) if g.id == promo]
    assert voided.voided_at is not None

    balancing = service.authorize(acme, "llm.chat", credits=5_000, balancing=True)
    assert (balancing.credits, balancing.reserved, balancing.requested) == (3_000, 3_000, 5_000)
    assert service.hold(balancing.id) == library.hold(balancing.id)
    with pytest.raises(InsufficientCredits):
        service.authorize(acme, "llm.chat", credits=1, balancing=True)
    assert library.verify() == []


def test_usage_queries_and_checks(
    service: CreditMeterClient, acme: str, library: CreditMeter
) -> None:
    service.charge(acme, "llm.chat", model="gpt-4o", member="ann", usage={"input_tokens": "2.5"})
    service.charge(acme, "csv_export", member="bob", usage={"calls": 3})
    records = service.usage(acme).data
    assert records == library.usage(acme).data
    assert records[1].quantities == {"input_tokens": "2.5"}
    assert records[1].credits == 2  # ceil(1.5 × 2.5 × 0.5)
    by_member = service.usage_summary(acme, group_by="member")
    assert by_member == library.usage_summary(acme, group_by="member")
    assert [(g.key, g.count, g.credits) for g in by_member] == [("ann", 1, 2), ("bob", 1, 15)]
    assert [r.feature for r in service.usage(acme, feature="csv_export").data] == ["csv_export"]
    out = io.StringIO()
    assert service.export_usage_csv(acme, out) == 2

    check = service.check(acme, "llm.chat", model="gpt-4o", usage={"output_tokens": 10_000})
    assert (check.allowed, check.cost, check.available) == (False, 30_000, 2_983)
    assert check.reason is not None
    assert service.check(acme, "csv_export").allowed


def test_a_batch_charges_each_event_by_itself(
    service: CreditMeterClient, acme: str, fresh_id: str
) -> None:
    results = service.charge_many(
        [
            UsageEvent(acme, "csv_export", idempotency_key=f"b1-{acme}"),
            UsageEvent("nobody", "csv_export", idempotency_key=f"b2-{acme}"),
            UsageEvent(acme, "csv_export", usage={"calls": 1_000}, idempotency_key=f"b3-{acme}"),
        ]
    )
    first, missing, short = results
    assert isinstance(first, Charge)
    assert first.credits == 5
    assert isinstance(missing, NotFound)
    assert isinstance(short, InsufficientCredits)
    assert short.required == 5_000
    assert service.balance(acme).available == 2_995


def test_accounts_settings_and_plan_changes(
    service: CreditMeterClient, admin: CreditMeterClient, fresh_id: str, library: CreditMeter
) -> None:
    created = service.create_account(
        fresh_id, name="Initech", plan="starter", metadata={"tier": "smb", "score": Decimal("0.5")}
    )
    assert created == library.account(fresh_id)
    assert created.metadata == {"tier": "smb", "score": "0.5"}  # a decimal travels as text
    assert service.create_account(fresh_id, name="other name") == created
    upgraded = admin.change_plan(fresh_id, "pro")
    assert upgraded.plan == "pro"
    assert service.balance(fresh_id).allowance.limit == 3_000
    assert any(a.id == fresh_id for a in admin.list_accounts(limit=1000))

    before = admin.settings()
    changed = admin.change_settings({"low_balance_threshold": 250}, changed_by="tests")
    assert changed.low_balance_threshold == 250
    assert changed.credits_per_usd == before.credits_per_usd
    latest = admin.settings_history()[0]
    assert latest["changes"] == {"low_balance_threshold": 250}
    assert latest["changed_by"].startswith("admin_key")
    admin.change_settings({"low_balance_threshold": before.low_balance_threshold})
    with pytest.raises(PermissionDenied):
        service.settings()
    with pytest.raises(InvalidRequest):
        admin.change_settings({"welcome_bonus": -1})


def test_a_wrong_key_and_an_unreachable_server(server: Server) -> None:
    with CreditMeterClient(server.url, "not-a-key") as wrong, pytest.raises(AuthenticationFailed):
        wrong.features()
    nowhere = f"http://127.0.0.1:{free_port()}"
    with CreditMeterClient(nowhere, "k", timeout=2) as client:
        with pytest.raises(ServiceUnavailable) as unreachable:
            client.balance("acme")
        assert unreachable.value.status is None


def test_packs_are_bought_and_recharged_through_the_client(
    admin: CreditMeterClient, priced: CreditMeterClient, server: Server, fresh_id: str
) -> None:
    admin.put_package(
        "client-pack", credits=1000, bonus_credits=100, price=999, currency="USD", popular=True
    )
    [pack] = [p for p in admin.packages() if p.id == "client-pack"]
    assert (pack.total_credits, pack.price.amount, pack.price.currency) == (1100, 999, "usd")
    admin.create_account(fresh_id)

    checkout = admin.checkout(fresh_id, "client-pack", ui_mode="elements", idempotency_key=fresh_id)
    assert (
        admin.checkout(fresh_id, "client-pack", ui_mode="elements", idempotency_key=fresh_id)
        == checkout
    )
    with httpx2.Client(base_url=server.url) as browser:  # the development checkout page
        token = (checkout.client_secret or "").partition("_secret_")[2]
        paid = browser.post(f"/dev/checkout/{checkout.purchase_id}/pay?token={token}")
        assert paid.status_code == 303

    def fulfilled() -> bool:
        [purchase] = admin.purchases(fresh_id).data
        return purchase.status is PurchaseStatus.FULFILLED

    wait_for(fulfilled)
    assert admin.balance(fresh_id).purchased_available == 1100

    config = admin.set_auto_recharge(
        fresh_id, enabled=True, threshold=100, package="client-pack", payment_method="pm_dev_visa"
    )
    assert (config.enabled, config.threshold, config.package_id) == (True, 100, "client-pack")
    admin.charge(fresh_id, "csv_export", credits=1050)
    wait_for(lambda: len(admin.purchases(fresh_id).data) == 2 and fulfilled_all(admin, fresh_id))
    assert admin.balance(fresh_id).available == 1100 - 1050 + 1100
    assert admin.auto_recharge(fresh_id).consecutive_failures == 0
    events = admin.payment_events(limit=1000)
    assert {"applied"} <= {e["status"] for e in events}

    with pytest.raises(NotFound):
        admin.checkout(fresh_id, "no-such-pack", success_url="https://a.example/ok")


def fulfilled_all(client: CreditMeterClient, account: str) -> bool:
    return all(p.status is PurchaseStatus.FULFILLED for p in client.purchases(account).data)


def wait_for(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not done in time"
        time.sleep(0.05)


def test_the_audit_log_comes_back_as_the_library_records(
    service: CreditMeterClient, admin: CreditMeterClient, fresh_id: str, library: CreditMeter
) -> None:
    service.create_account(fresh_id)
    admin.grant(fresh_id, 50, reason="goodwill")

    page = admin.audit_log(account=fresh_id)
    out = io.StringIO()
    exported = admin.export_audit_log_csv(out, account=fresh_id, actions=("grant.created",))

    assert [(e.action, e.actor.kind) for e in page.data] == [
        (Action.GRANT_CREATED, ActorKind.ADMIN_KEY_ENV),
        (Action.ACCOUNT_CREATED, ActorKind.API_KEY),
    ]
    assert page.data == library.audit_log(account=fresh_id).data
    assert list(admin.iter_audit_log(account=fresh_id)) == list(page.data)
    assert exported == 1
    assert [row["action"] for row in csv.DictReader(io.StringIO(out.getvalue()))] == [
        "grant.created"
    ]
    with pytest.raises(PermissionDenied):
        service.audit_log()


def test_webhook_endpoints_are_managed_through_the_client(
    admin: CreditMeterClient, library: CreditMeter
) -> None:
    made, secret = admin.create_webhook_endpoint(
        "https://example.com/hooks", event_types=["purchase.failed"], enabled=False
    )
    assert secret.startswith("whsec_")
    assert (made.url, made.event_types, made.enabled) == (
        "https://example.com/hooks",
        ("purchase.failed",),
        False,
    )
    assert made in admin.webhook_endpoints()
    assert admin.webhook_endpoint(made.id) == library.webhook_endpoint(made.id) == made
    changed = admin.update_webhook_endpoint(made.id, event_types=["*"], description="all")
    assert (changed.event_types, changed.description) == (("*",), "all")
    assert admin.webhook_deliveries(made.id) == []
    admin.delete_webhook_endpoint(made.id)
    with pytest.raises(NotFound) as gone:
        admin.webhook_endpoint(made.id)
    assert (gone.value.kind, gone.value.key) == ("webhook endpoint", made.id)


def test_a_delivery_is_redelivered_through_the_client(
    admin: CreditMeterClient, library: CreditMeter
) -> None:
    made, _ = admin.create_webhook_endpoint("https://example.com/nobody")
    later = library.clock() + timedelta(hours=1)  # no retry falls due while the test runs
    event = Job("job_event", "event.purchase.failed", {"account_id": "acme"}, 1, later)
    with library.db.write() as conn:
        webhooks.fan_out(conn, later, event)
        [job] = outbox.take(conn, later, timedelta(seconds=60), 1)
        webhooks.record(conn, later, job, webhooks.Answer(None, 0, "ConnectError"))

    [failed] = admin.webhook_deliveries(made.id)
    assert failed.event_id == "job_event"
    assert admin.redeliver_webhook(made.id, failed.id) is True
    assert admin.redeliver_webhook(made.id, failed.id) is False


def test_a_secret_is_rotated_through_the_client(
    admin: CreditMeterClient, library: CreditMeter
) -> None:
    made, old = admin.create_webhook_endpoint("https://example.com/hooks")
    rotated, new = admin.rotate_webhook_secret(made.id, overlap=timedelta(hours=1))

    assert new.startswith("whsec_")
    assert new != old
    assert rotated == library.webhook_endpoint(made.id)
    assert rotated.previous_secret_until == rotated.updated_at + timedelta(hours=1)


def test_notification_preferences_through_the_client(
    admin: CreditMeterClient, library: CreditMeter, fresh_id: str
) -> None:
    admin.create_account(fresh_id)
    assert admin.notification_preferences(fresh_id) == library.notification_preferences(fresh_id)
    chosen = admin.set_notification_preferences(
        fresh_id, emails=["ap@acme.example"], channels={"purchase.failed": ["webhook"]}
    )
    assert chosen == library.notification_preferences(fresh_id)
    assert not chosen.wants("purchase.failed", "email")
