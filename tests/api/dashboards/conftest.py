"""A served app (uvicorn in a thread, on the test's engine) with sample data, and one
Chromium for the journeys: Debian's, driven by Playwright; never a downloaded one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright
from pydantic import SecretStr

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings
from creditmeter.payments.dev import DevProvider
from tests.client.conftest import free_port
from tests.conftest import Clock

CHROMIUM = Path("/usr/bin/chromium")
ADMIN_KEY = "dashboards-admin-key-of-at-least-32-characters"
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=375, height=800)


@dataclass
class Served:
    url: str
    meter: CreditMeter
    clock: Clock
    service_key: str
    admin_key: str
    superadmin_key: str

    def portal_link(self, account_id: str, **body: str) -> str:
        _, token = self.meter.create_portal_session(account_id, **body)  # type: ignore[arg-type]
        return f"{self.url}/portal/session/{token}"


def sample(meter: CreditMeter, clock: Clock) -> None:
    """Two accounts with a month of usage across features, models and members, packs on
    sale, a plan with pools."""
    meter.put_feature("chat", name="Chat", rates={"input_tokens": "0.01", "output_tokens": "0.03"})
    meter.put_feature("images", name="Image generation", pool="images", rates={"images": 40})
    meter.put_feature("research", name="Deep research", rates={"calls": 250})
    meter.put_plan(
        "pro",
        name="Pro",
        allowances={"*": 20_000, "images": 2_000},
        features=["chat", "images"],
    )
    meter.put_package("starter", name="Starter", credits=5_000, price=900, currency="usd")
    meter.put_package(
        "growth",
        name="Growth",
        credits=20_000,
        bonus_credits=2_000,
        price=2_900,
        currency="usd",
        popular=True,
        sort_order=1,
    )
    meter.put_package(
        "scale",
        name="Scale",
        credits=60_000,
        bonus_credits=10_000,
        price=7_900,
        currency="usd",
        best_value=True,
        sort_order=2,
    )
    now = clock.now
    clock.now = now.replace(day=1)
    meter.create_account("acme", name="Acme Robotics", plan="pro")
    meter.create_account("globex", name="Globex", plan="pro")
    for day in range(9):
        clock.now = now.replace(day=1 + day, hour=10)
        for n, member in enumerate(("ana", "ben", "chen")):
            meter.charge(
                "acme",
                "chat",
                provider_cost=Decimal("0.0042") * (day + n + 1),
                usage={
                    "input_tokens": 20_000 + day * 3_000 * n,
                    "output_tokens": 8_000 + day * 500,
                },
                model=("gpt-4o", "claude-sonnet-4", "gpt-4o-mini")[n],
                member=member,
            )
        if day % 2 == 0:
            meter.charge(
                "acme",
                "images",
                usage={"images": 3},
                model="gpt-image-1",
                member="ana",
                provider_cost=Decimal("0.12"),
            )
        meter.charge("globex", "chat", usage={"input_tokens": 5_000, "output_tokens": 2_000})
    started = meter.checkout("globex", "starter", ui_mode="elements")
    assert isinstance(meter.payments, DevProvider)
    meter.payments.complete(meter.purchase(started.purchase_id))
    while meter.work():
        pass
    clock.now = now
    meter.authorize("acme", "chat", credits=300, ttl=timedelta(hours=12))
    meter.create_webhook_endpoint(
        "https://hooks.acme.example/credits",
        event_types=("purchase.fulfilled", "purchase.refunded"),
        description="The billing service",
        enabled=False,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One browser for the journeys' module: Playwright's synchronous API keeps an event
    loop running in this thread while it is started, which ``asyncio.run`` in a later
    test would refuse to run beside."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def served(migrated_url: str, clock: Clock) -> Iterator[Served]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with CreditMeter(migrated_url, clock=clock, payments=DevProvider(url)) as meter:
        sample(meter, clock)
        settings = ServerSettings(
            admin_key=SecretStr(ADMIN_KEY),
            rate_limits=False,
            sweep_interval=0,
            worker_interval=0.05,
            public_url=url,
            brand_name="Acme AI",
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, meter=meter), port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "the server stopped"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        try:
            yield Served(
                url=url,
                meter=meter,
                clock=clock,
                service_key=meter.create_api_key("service")[1],
                admin_key=meter.create_api_key("admin", name="Ada (admin)")[1],
                superadmin_key=meter.create_api_key("superadmin", name="Sam (superadmin)")[1],
            )
        finally:
            server.should_exit = True
            thread.join(timeout=20)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    context.close()


class Screens:
    """Saves a page at desktop and phone width."""

    def __init__(self, directory: Path, engine: str) -> None:
        self.directory = directory
        self.engine = engine

    def take(self, page: Page, name: str) -> None:
        for width, size in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(size)
            page.screenshot(
                path=self.directory / f"{name}-{width}-{self.engine}.png", full_page=True
            )
        page.set_viewport_size(DESKTOP)


@pytest.fixture
def screens(screenshots: Path, engine_name: str) -> Screens:
    return Screens(screenshots, engine_name)


def wait_for(check: object, seconds: float = 10) -> None:
    """Until ``check()`` is true (the worker applies a payment in its own thread)."""
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
