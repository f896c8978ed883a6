"""Sample data for ``creditmeter demo``: a price book, three plans, credit packs, a few
accounts and some weeks of their usage, made through the library on a clock that walks
through the past days, so that the ledger, the purchases, the usage charts and the
summaries have a history. Credits are bought from the development payment provider.

The usage is drawn from a seeded random generator: every run tells the same story.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from creditmeter.core.errors import InsufficientCredits
from creditmeter.meter import CreditMeter
from creditmeter.payments.dev import WORKING_CARD, DevProvider

DAYS: Final = 21
SEED: Final = 2026
WELCOME_BONUS: Final = 500
UPGRADE_URL: Final = "https://example.com/billing/upgrade"
SUCCESS_URL: Final = "https://example.com/billing/done"
CURRENCY: Final = "usd"
RECHARGE_PACK: Final = "small"
RECHARGE_MONTHLY_CAP: Final = 5_000
"""In cents: at most $50.00 of auto-recharges a month."""
CREDITS_PER_USD: Final = 200_000
"""What a dollar of the provider's cost is charged before the multiplier: gpt-4o's $2.50
per million input tokens is half a credit a token."""
PROVIDERS: Final = ("openai", "anthropic")
"""The providers whose model prices the demo imports from the price catalogue."""

ALERT_ACCOUNT: Final = "acme"
"""The account whose allowance the demo takes past an alert while its receiver listens."""
GOAL_CREDITS: Final = 50

MODELS: Final = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4")
IMAGE_SIZES: Final = ("images_512", "images_1024", "images_1792")


@dataclass(frozen=True)
class SampleAccount:
    id: str
    name: str
    plan: str
    members: tuple[str, ...]
    activity: int
    """Operations on a busy day."""
    pack: str | None = None
    """The credit pack bought on the first day."""
    recharge_below: int | None = None
    """Auto-recharge with the small pack and the development provider's working card when
    the available credits fall below this."""


ACCOUNTS: Final = (
    SampleAccount("acme", "Acme Inc.", "pro", ("ann", "bob", "chen"), 4, pack="medium"),
    SampleAccount("globex", "Globex", "starter", ("dana",), 3),
    SampleAccount("initech", "Initech", "enterprise", ("erin", "frank"), 6),
    SampleAccount("umbrella", "Umbrella Labs", "pro", ("gus", "hana"), 4, recharge_below=8_000),
)


class WalkingClock:
    """A clock that starts at ``now``, which :func:`seed` sets back in the past and moves
    forward until it is ``now`` again."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move_to(self, at: datetime) -> None:
        self.now = max(self.now, at)


@dataclass
class SampleData:
    accounts: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    plans: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    operations: int = 0
    refused: int = 0
    first_day: datetime | None = None
    by_account: dict[str, int] = field(default_factory=dict)


def price_book(meter: CreditMeter) -> tuple[str, ...]:
    """Fixed-cost operations, LLM chat priced cost-plus from the catalogue's model prices
    (imported here, from the installed catalogue's snapshot: no network) with a 1.5×
    multiplier, and image generation per image size."""
    meter.put_feature("lead_collection", name="Lead collection", rates={"calls": 20})
    meter.put_feature("csv_export", name="CSV export", rates={"calls": 5})
    meter.put_feature("generate_goal", name="Generate a goal", rates={"calls": GOAL_CREDITS})
    meter.sync_prices(PROVIDERS)
    meter.put_feature("llm.chat", name="LLM chat", cost_plus=True, multiplier="1.5")
    meter.put_feature(
        "image.generate",
        name="Image generation",
        rates={"images_512": 40, "images_1024": 100, "images_1792": 180},
    )
    return ("lead_collection", "csv_export", "generate_goal", "llm.chat", "image.generate")


def plans(meter: CreditMeter) -> tuple[str, ...]:
    """Pro renews on each account's anniversary: the weeks of sample usage never cross a
    renewal, so they tell the same story (a pack spent, a recharge) on every date."""
    meter.put_plan(
        "starter",
        name="Starter",
        allowances={"*": 1_000},
        features=["lead_collection", "csv_export", "generate_goal"],
    )
    meter.put_plan(
        "pro",
        name="Pro",
        allowances={"*": 20_000},
        period="anniversary_month",
        rollover_cap=5_000,
    )
    meter.put_plan("enterprise", name="Enterprise", allowances={"*": None})
    return ("starter", "pro", "enterprise")


def packages(meter: CreditMeter) -> tuple[str, ...]:
    """Three credit packs in dollars, the larger ones with bonus credits and badges."""
    meter.put_package(
        "small", name="Small", credits=5_000, price=999, currency=CURRENCY, sort_order=1
    )
    meter.put_package(
        "medium",
        name="Medium",
        credits=10_000,
        bonus_credits=1_000,
        price=1_999,
        currency=CURRENCY,
        popular=True,
        sort_order=2,
    )
    meter.put_package(
        "large",
        name="Large",
        credits=25_000,
        bonus_credits=5_000,
        price=4_499,
        currency=CURRENCY,
        best_value=True,
        sort_order=3,
    )
    return ("small", "medium", "large")


def run_jobs(meter: CreditMeter) -> None:
    """What the server's worker does: apply payment events, charge auto-recharges."""
    while meter.work():
        pass


def buy(meter: CreditMeter, account_id: str, package_id: str) -> None:
    """A checkout paid at once with the development provider, its event applied."""
    provider = meter.payments
    if not isinstance(provider, DevProvider):
        raise TypeError("the sample data is bought from the development payment provider")
    started = meter.checkout(account_id, package_id, success_url=SUCCESS_URL)
    provider.complete(meter.purchase(started.purchase_id))
    run_jobs(meter)


def seed(meter: CreditMeter, clock: WalkingClock, *, days: int = DAYS) -> SampleData:
    """Everything the demo serves, made on ``meter`` (with the development payment
    provider) whose clock is ``clock``; the clock is set ``days`` days back from its time
    and ends a minute before it."""
    end = clock.now - timedelta(minutes=1)
    start = (end - timedelta(days=days)).replace(hour=8, minute=0, second=0, microsecond=0)
    clock.now = start
    data = SampleData(first_day=start)
    meter.change_settings(
        {
            "welcome_bonus": WELCOME_BONUS,
            "upgrade_url": UPGRADE_URL,
            "credits_per_usd": str(CREDITS_PER_USD),
        },
        changed_by="demo",
    )
    data.features = price_book(meter)
    data.plans = plans(meter)
    data.packages = packages(meter)
    for sample in ACCOUNTS:
        meter.create_account(sample.id, name=sample.name, plan=sample.plan)
        if sample.pack is not None:
            buy(meter, sample.id, sample.pack)
        if sample.recharge_below is not None:
            meter.set_auto_recharge(
                sample.id,
                enabled=True,
                threshold=sample.recharge_below,
                package=RECHARGE_PACK,
                payment_method=WORKING_CARD,
                monthly_cap=RECHARGE_MONTHLY_CAP,
            )
        data.by_account[sample.id] = 0
    data.accounts = tuple(a.id for a in ACCOUNTS)
    rng = random.Random(SEED)
    for day in range(days + 1):
        morning = start + timedelta(days=day)
        weekend = morning.weekday() >= 5
        for sample in ACCOUNTS:
            count = rng.randint(0, 2 if weekend else sample.activity)
            for at in sorted(
                morning + timedelta(minutes=rng.randint(0, 600)) for _ in range(count)
            ):
                if at >= end:
                    continue
                clock.move_to(at)
                operation = pick_operation(rng, sample)
                try:
                    operation(meter)
                except InsufficientCredits:
                    data.refused += 1
                else:
                    data.operations += 1
                    data.by_account[sample.id] += 1
                run_jobs(meter)
    clock.move_to(end)
    # As the server's sweeper and worker would: periods that ended are renewed (their
    # events queued) and those jobs run, so the demo starts with nothing due.
    meter.sweep()
    run_jobs(meter)
    return data


def reach_allowance_alert(meter: CreditMeter, account_id: str = ALERT_ACCOUNT) -> int | None:
    """The team of ``account_id`` (a Pro account three weeks into its period) generates
    goals in a batch just big enough to take its allowance to the next percentage of
    ``allowance_alerts`` it has not reached this period, and the worker runs: the sample
    data crossing a threshold once the demo's webhook receiver listens. The percentage
    reached, or ``None`` if all of them were reached already."""
    allowance = meter.balance(account_id).allowance
    if allowance.limit is None:
        return None
    percentage = next(
        (
            p
            for p in meter.settings().allowance_alerts
            if allowance.used * 100 < p * allowance.limit
        ),
        None,
    )
    if percentage is None:
        return None
    needed = -(-percentage * allowance.limit // 100) - allowance.used
    calls = -(-needed // GOAL_CREDITS)
    member = next(a.members[0] for a in ACCOUNTS if a.id == account_id)
    meter.charge(account_id, "generate_goal", usage={"calls": calls}, member=member)
    run_jobs(meter)
    return percentage


def pick_operation(rng: random.Random, sample: SampleAccount) -> Callable[[CreditMeter], object]:
    """One operation of the account's kind: an LLM call held then settled, images, or a
    fixed-cost operation (the only kind a starter plan allows)."""
    member = rng.choice(sample.members)
    kind = rng.random()
    if sample.plan == "starter" or kind < 0.25:
        feature = rng.choice(("lead_collection", "csv_export", "generate_goal"))
        calls = rng.randint(1, 3)
        return lambda m: m.charge(sample.id, feature, usage={"calls": calls}, member=member)
    if kind < 0.4:
        size = rng.choice(IMAGE_SIZES)
        images = rng.randint(1, 4)
        return lambda m: m.charge(sample.id, "image.generate", usage={size: images}, member=member)
    model = rng.choices(MODELS, weights=(2, 6, 1))[0]
    estimate = {"input_tokens": rng.randint(200, 1_200), "output_tokens": 500}
    actual = {
        "input_tokens": estimate["input_tokens"],
        "output_tokens": rng.randint(50, 600),
    }
    failed = rng.random() < 0.05

    def llm_call(m: CreditMeter) -> object:
        with m.holding(
            sample.id, "llm.chat", estimate=estimate, model=model, member=member
        ) as call:
            return call.settle(usage=actual, success=not failed)

    return llm_call
