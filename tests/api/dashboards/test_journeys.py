"""The dashboards in a real browser (Debian's Chromium, driven by Playwright), on both
engines: a customer's journey, an admin's, and the boundaries between them. Every page
visited is saved at desktop and phone width in the session's ``screenshots`` directory."""

from __future__ import annotations

import base64

import httpx2
from playwright.sync_api import Page, expect

from tests.api.dashboards.conftest import Screens, Served, wait_for


def portal_link(served: Served, account_id: str) -> str:
    answer = httpx2.post(
        f"{served.url}/v1/accounts/{account_id}/portal-sessions",
        headers={"Authorization": f"Bearer {served.service_key}"},
        json={"return_url": "https://app.example/settings"},
    )
    assert answer.status_code == 201, answer.text
    url: str = answer.json()["url"]
    return url


def sign_in(page: Page, served: Served, key: str) -> None:
    page.goto(f"{served.url}/admin")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def the_other_pages(page: Page, served: Served, screens: Screens) -> None:
    """The catalogue, webhooks and API keys (a key made, its secret shown once), then
    sign out."""
    for name, shot in (
        ("Catalogue", "admin-catalogue"),
        ("API keys", "admin-keys"),
        ("Webhooks", "admin-webhooks"),
    ):
        page.get_by_role("link", name=name, exact=True).click()
        expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
        screens.take(page, shot)
    expect(page.get_by_text("https://hooks.acme.example/credits")).to_be_visible()

    page.get_by_role("link", name="API keys", exact=True).click()
    page.get_by_label("Role").select_option("service")
    page.get_by_label("Name").fill("backend")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-secret").inner_text()
    assert served.meter.authenticate(secret) is not None

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_customer_buys_credits_and_sets_up_auto_recharge(
    page: Page, served: Served, screens: Screens
) -> None:
    page.goto(portal_link(served, "acme"))
    expect(page.get_by_role("heading", name="Credits", exact=True)).to_be_visible()
    before = served.meter.balance("acme").available
    expect(page.get_by_test_id("available")).to_have_text(f"{before:,}")
    expect(page.get_by_role("progressbar", name="Monthly allowance used")).to_be_visible()
    expect(page.get_by_text("Deep research")).to_be_visible()  # not in the plan
    expect(page.get_by_test_id("purchased")).to_have_count(0)
    expect(page.get_by_test_id("forecast")).to_contain_text("the credits last until")
    screens.take(page, "portal")
    page.get_by_role("link", name="By model").click()
    expect(page.get_by_role("list", name="Legend")).to_contain_text("claude-sonnet-4")
    page.get_by_role("link", name="By member").click()
    expect(page.get_by_role("list", name="Legend")).to_contain_text("chen")

    page.get_by_role("button", name="Buy Growth for $29.00").click()
    expect(page.get_by_role("heading", name="Growth")).to_be_visible()
    screens.take(page, "dev-checkout")
    page.get_by_role("button", name="Pay $29.00").click()
    wait_for(lambda: served.meter.balance("acme").purchased_available == 22_000)
    page.get_by_role("link", name="Return to the shop").click()
    expect(page.get_by_text("22,000 credits were added")).to_be_visible()
    expect(page.get_by_test_id("purchased")).to_have_text("+ 22,000 purchased credits available")
    expect(page.get_by_test_id("available")).to_have_text(f"{before + 22_000:,}")

    page.get_by_label("Buy credits automatically").check()
    page.get_by_label("When available credits fall below").fill("2000")
    page.get_by_label("Buy this pack").select_option("starter")
    page.get_by_label("Monthly limit").fill("50.00")
    page.get_by_role("button", name="Save auto-recharge").click()
    expect(page.get_by_text("Auto-recharge settings saved.")).to_be_visible()
    recharge = served.meter.auto_recharge("acme")
    assert (recharge.enabled, recharge.threshold, recharge.package_id, recharge.monthly_cap) == (
        True,
        2_000,
        "starter",
        5_000,
    )
    screens.take(page, "portal-after-purchase")

    page.get_by_role("link", name="Transactions", exact=True).click()
    expect(page.get_by_role("heading", name="Transactions")).to_be_visible()
    page.get_by_label("Type").select_option("purchase")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    screens.take(page, "portal-transactions")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    text = download.value.path().read_text()
    assert text.startswith("id,created_at,type,amount")
    assert [line.split(",")[2] for line in text.splitlines()[1:]] == ["purchase"]

    page.goto(f"{served.url}/portal/embed/balance")
    expect(page.get_by_test_id("available")).to_have_text(f"{before + 22_000:,}")
    screens.take(page, "portal-embed")


def test_an_admin_grants_credits_and_changes_a_setting(
    page: Page, served: Served, screens: Screens
) -> None:
    page.goto(f"{served.url}/admin")
    screens.take(page, "admin-sign-in")
    sign_in(page, served, served.superadmin_key)
    screens.take(page, "admin-overview")

    page.get_by_role("link", name="Accounts", exact=True).click()
    page.get_by_label("Search").fill("robot")
    page.get_by_label("Sort by").select_option("available")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("link", name="Globex")).to_have_count(0)
    screens.take(page, "admin-accounts")
    page.get_by_role("link", name="Acme Robotics").click()
    expect(page.get_by_role("heading", name="Acme Robotics")).to_be_visible()
    before = served.meter.balance("acme").available
    holds = page.get_by_role("region", name="Pending holds")
    expect(holds.locator("tbody tr")).to_have_count(1)
    expect(holds).to_contain_text("300")
    screens.take(page, "admin-account")

    page.get_by_label("Credits", exact=True).fill("1500")
    page.get_by_label("Reason", exact=True).fill("Goodwill after the outage")
    page.get_by_role("button", name="Review grant").click()
    expect(page.get_by_role("heading", name="Confirm the grant")).to_be_visible()
    screens.take(page, "admin-confirm-grant")
    page.get_by_role("button", name="Grant 1,500 credits").click()
    expect(page.get_by_text("Granted 1,500 credits.")).to_be_visible()
    assert served.meter.balance("acme").available == before + 1_500
    expect(page.get_by_test_id("available")).to_have_text(f"{before + 1_500:,}")
    transactions = page.get_by_role("region", name="Transactions")
    expect(transactions.locator("tbody tr").first).to_contain_text("+1,500")

    page.get_by_role("link", name="Audit log").first.click()
    entry = page.locator("tbody tr").first
    expect(entry).to_contain_text("grant.created")
    expect(entry).to_contain_text("Goodwill after the outage")
    key_id = served.meter.audit_log(account="acme", limit=1).data[0].actor.key_id
    expect(entry).to_contain_text(str(key_id))
    screens.take(page, "admin-audit")

    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Low balance at or below (credits)").fill("5000")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    assert served.meter.settings().low_balance_threshold == 5_000
    history = page.get_by_role("region", name="History")
    expect(history.locator("ol.history > li").first).to_contain_text("low_balance_threshold → 5000")
    expect(history.locator("ol.history > li").first).to_contain_text("Sam (superadmin)")
    screens.take(page, "admin-settings")

    the_other_pages(page, served, screens)


def test_the_boundaries_hold_in_the_browser(page: Page, served: Served) -> None:
    link = portal_link(served, "acme")
    page.goto(link)
    expect(page.get_by_text("Acme Robotics").first).to_be_visible()
    # A used link is refused, and so is an expired one.
    answer = page.goto(link)
    assert answer is not None
    assert answer.status == 403
    expect(page.get_by_text("This link has expired or was already used")).to_be_visible()
    late = served.portal_link("globex")
    served.clock.advance(minutes=6)
    answer = page.goto(late)
    assert answer is not None
    assert answer.status == 403
    served.clock.advance(minutes=-6)

    # The portal session reaches acme only: neither the console nor the API take it, and
    # a cookie rewritten to name globex is no session.
    page.goto(f"{served.url}/portal")
    expect(page.get_by_text("Globex")).to_have_count(0)
    page.goto(f"{served.url}/admin/accounts/globex")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.request.get(f"{served.url}/v1/accounts/globex/balance").status == 401
    cookie = next(c for c in page.context.cookies() if c["name"] == "creditmeter_portal")
    body, mac = cookie["value"].split(".")
    forged = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(body + "==").replace(b'"acme"', b'"globex"')
    ).rstrip(b"=")
    page.context.add_cookies(
        [
            {
                "name": cookie["name"],
                "value": f"{forged.decode()}.{mac}",
                "domain": cookie["domain"],
                "path": cookie["path"],
            }
        ]
    )
    answer = page.goto(f"{served.url}/portal")
    assert answer is not None
    assert answer.status == 401

    # An admin reads but cannot grant, even by posting the form with its token.
    sign_in(page, served, served.admin_key)
    page.goto(f"{served.url}/admin/accounts/acme")
    expect(page.get_by_role("heading", name="Acme Robotics")).to_be_visible()
    expect(page.get_by_role("button", name="Review grant")).to_have_count(0)
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    before = served.meter.balance("acme").available
    refused = page.request.post(
        f"{served.url}/admin/accounts/acme/grant",
        form={"csrf_token": str(token), "amount": "100", "reason": "x", "confirm": "yes"},
    )
    assert refused.status == 403
    assert "Superadmins only" in refused.text()

    # A form without its CSRF token is refused, signed in as a superadmin too.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, served, served.superadmin_key)
    refused = page.request.post(
        f"{served.url}/admin/accounts/acme/grant",
        form={"amount": "100", "reason": "x", "confirm": "yes"},
    )
    assert refused.status == 403
    assert "security token" in refused.text()
    assert served.meter.balance("acme").available == before
