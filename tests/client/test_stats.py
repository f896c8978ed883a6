"""The admin overview, account search, usage charts, forecast, pending holds and portal
links through the client against a live ``creditmeter serve``, on SQLite and PostgreSQL:
the same records as the library's for the same data, with every dollar an exact Decimal."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

import httpx2
import pytest

from creditmeter import CreditMeter, InvalidRequest, NotFound
from creditmeter.client import CreditMeterClient, PermissionDenied
from creditmeter.core.payments import PurchaseStatus
from creditmeter.core.stats import Level
from tests.client.conftest import Server
from tests.client.test_client import wait_for


@pytest.fixture
def seeded(admin: CreditMeterClient, server: Server, fresh_id: str) -> str:
    """A prefix whose three accounts have usage by two features, models and members with
    provider costs, an admin grant, a refunded usage and a pack bought with the
    development provider."""
    admin.change_settings({"credits_per_usd": "800"})
    admin.put_feature(
        "chat",
        rates={"input_tokens": "0.25", "output_tokens": 1},
        models={"gpt-4o": {"input_tokens": Decimal("0.5"), "output_tokens": 2}},
    )
    admin.put_feature("images", rates={"images": 40})
    admin.put_plan("stats-pro", allowances={"*": 3_000})
    admin.put_package("stats-pack", credits=1_000, bonus_credits=100, price=999, currency="USD")
    big, low, idle = (f"{fresh_id}-{n}" for n in ("big", "low", "idle"))
    admin.create_account(big, name="Big Co", plan="stats-pro")
    admin.create_account(low, name="Low Ltd")
    admin.create_account(idle, name="Idle plc")
    admin.grant(low, 1_150, reason="trial")
    admin.grant(idle, 5_000, reason="goodwill")
    usage = {"input_tokens": 1_000, "output_tokens": 300}
    cost = Decimal("0.0123456789")
    admin.charge(big, "chat", usage=usage, model="gpt-4o", member="ann", provider_cost=cost)
    admin.charge(big, "chat", usage=usage, member="bob", provider_cost=Decimal("0.002"))
    admin.charge(big, "images", usage={"images": 3}, member="ann")
    refunded = admin.charge(low, "images", usage={"images": 2}, provider_cost=Decimal("0.04"))
    admin.refund(low, usage_id=refunded.usage_id, reason="bad picture")
    admin.charge(low, "chat", usage=usage, model="gpt-4o", provider_cost=Decimal("0.01"))

    checkout = admin.checkout(big, "stats-pack", ui_mode="elements", idempotency_key=big)
    with httpx2.Client(base_url=server.url) as browser:  # the development checkout page
        token = (checkout.client_secret or "").partition("_secret_")[2]
        assert browser.post(f"/dev/checkout/{checkout.purchase_id}/pay?token={token}").is_redirect
    wait_for(lambda: admin.purchases(big).data[0].status is PurchaseStatus.FULFILLED)
    return fresh_id


def around(library: CreditMeter) -> tuple[datetime, datetime]:
    now = library.clock()
    return now - timedelta(days=1), now + timedelta(days=1)


def test_the_overview_and_its_breakdowns_are_the_library_s(
    admin: CreditMeterClient, library: CreditMeter, seeded: str
) -> None:
    since, until = around(library)
    overview = admin.stats(since=since, until=until)
    assert overview == library.stats(since=since, until=until)
    assert admin.stats(since=since, until=until, currency="usd") == library.stats(
        since=since, until=until, currency="usd"
    )
    assert admin.model_stats(since=since, until=until) == library.model_stats(
        since=since, until=until
    )
    assert admin.feature_stats(since=since, until=until) == library.feature_stats(
        since=since, until=until
    )

    assert [(r.currency, r.gross, r.net) for r in overview.revenue] == [("usd", 999, 999)]
    assert overview.provider_cost_usd == Decimal("0.0643456789")
    for dollars in (overview.billable_usd, overview.margin_usd, overview.average_balance):
        assert type(dollars) is Decimal
    gpt = next(m for m in admin.model_stats(since=since, until=until) if m.key == "gpt-4o")
    assert gpt.provider_cost_usd == Decimal("0.0223456789")
    assert gpt.billable_usd == Decimal(gpt.credits) / 800
    assert type(gpt.margin_ratio) is Decimal


def test_account_search_is_the_library_s_page_by_page(
    admin: CreditMeterClient, library: CreditMeter, seeded: str
) -> None:
    found = admin.search_accounts(query=seeded, sort="available", descending=True, limit=2)
    assert found == library.search_accounts(
        query=seeded, sort="available", descending=True, limit=2
    )
    assert [a.name for a in found.items] == ["Idle plc", "Big Co"]
    assert found.next_cursor is not None
    rest = admin.search_accounts(
        query=seeded, sort="available", descending=True, after=found.next_cursor, limit=2
    )
    assert rest == library.search_accounts(
        query=seeded, sort="available", descending=True, after=found.next_cursor, limit=2
    )
    assert [(a.name, a.level) for a in rest.items] == [("Low Ltd", Level.CRITICAL)]
    assert rest.next_cursor is None
    assert admin.search_accounts(query=seeded, plan="stats-pro", level="healthy").items == (
        library.search_accounts(query=seeded, plan="stats-pro", level="healthy").items
    )
    with pytest.raises(InvalidRequest):
        admin.search_accounts(level="broke")


def test_daily_usage_of_an_account_and_of_all_is_the_library_s(
    admin: CreditMeterClient, library: CreditMeter, seeded: str
) -> None:
    since, until = around(library)
    big = f"{seeded}-big"
    for by in ("feature", "model", "member"):
        days = admin.daily_usage(big, since=since, until=until, by=by)
        assert days == library.daily_usage(big, since=since, until=until, by=by)
        assert days
        assert all(type(d.day) is date for d in days)
        everyone = admin.daily_usage(None, since=since, until=until, by=by)
        assert everyone == library.daily_usage(None, since=since, until=until, by=by)
    by_member = admin.daily_usage(big, since=since, until=until, by="member")
    assert {d.key for d in by_member} == {"ann", "bob"}
    with pytest.raises(NotFound):
        admin.daily_usage(f"{seeded}-none", since=since, until=until)
    with pytest.raises(InvalidRequest):
        admin.daily_usage(big, since=until, until=since)


def test_the_forecast_is_the_library_s(
    admin: CreditMeterClient, library: CreditMeter, seeded: str
) -> None:
    for account in (f"{seeded}-big", f"{seeded}-idle"):
        assert admin.forecast(account) == library.forecast(account)
    burning = admin.forecast(f"{seeded}-big")
    assert type(burning.burn_per_day) is Decimal
    assert burning.burn_per_day == Decimal(burning.consumed) / burning.days
    assert type(burning.runs_out_on) is date
    assert admin.forecast(f"{seeded}-idle").runs_out_on is None
    with pytest.raises(NotFound):
        admin.forecast(f"{seeded}-none")


def test_only_admins_read_the_overview(
    admin: CreditMeterClient, server: Server, library: CreditMeter
) -> None:
    since, until = around(library)
    _, secret = admin.create_api_key("service", name="stats-backend")
    with CreditMeterClient(server.url, secret) as service:
        with pytest.raises(PermissionDenied):
            service.stats(since=since, until=until)
        with pytest.raises(PermissionDenied):
            service.search_accounts()
        with pytest.raises(PermissionDenied):
            service.daily_usage(None, since=since, until=until)


def test_pending_holds_are_the_library_s(
    admin: CreditMeterClient, library: CreditMeter, fresh_id: str
) -> None:
    admin.create_account(fresh_id)
    admin.grant(fresh_id, 500, reason="holds")
    first = admin.authorize(fresh_id, "images", credits=40)
    admin.authorize(fresh_id, "images", credits=80)
    held = admin.pending_holds_of(fresh_id)
    assert held == library.pending_holds_of(fresh_id)
    assert held[0] == first
    assert admin.pending_holds_of(fresh_id, limit=1) == library.pending_holds_of(fresh_id, limit=1)
    with pytest.raises(InvalidRequest, match="at most 100"):
        admin.pending_holds_of(fresh_id, limit=101)


def test_a_portal_link_opens_once_for_its_account(
    admin: CreditMeterClient, server: Server, library: CreditMeter, fresh_id: str
) -> None:
    admin.create_account(fresh_id)
    session, token = admin.create_portal_session(fresh_id, return_url="https://app.example/x")
    assert (session.account_id, session.return_url) == (fresh_id, "https://app.example/x")
    assert session.expires_at - session.created_at == timedelta(minutes=5)
    opened = library.open_portal_session(token)
    assert opened is not None
    assert replace(opened, used_at=None) == session
    assert library.open_portal_session(token) is None

    # Links are asked for by the host app's backend: an account's own key may not, and
    # another account's key does not learn that the account exists.
    other = f"{fresh_id}-other"
    admin.create_account(other)
    _, own = admin.create_api_key("account", account_id=fresh_id, name="own")
    _, others = admin.create_api_key("account", account_id=other, name="other's")
    with CreditMeterClient(server.url, own) as customer, pytest.raises(PermissionDenied):
        customer.create_portal_session(fresh_id)
    with CreditMeterClient(server.url, others) as theirs, pytest.raises(NotFound):
        theirs.create_portal_session(fresh_id)
    with pytest.raises(NotFound):
        admin.create_portal_session(f"{fresh_id}-none")
    with pytest.raises(InvalidRequest, match="300 seconds"):
        admin.create_portal_session(fresh_id, lifetime=timedelta(days=1))
