"""``creditmeter demo --tour``: a worked example of the library on a database of its own.

Every figure it prints comes from the library as it runs; nothing is hard-coded but the
story: a price book, three plans, an account that buys a credit pack, holds and settles
an LLM call, runs through its allowance, is refused, and gets a refund.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from creditmeter.cli import views
from creditmeter.cli.failures import CommandFailed
from creditmeter.core.errors import FeatureNotInPlan, InsufficientCredits
from creditmeter.core.pricing import Feature
from creditmeter.core.records import Charge, Transaction
from creditmeter.meter import CreditMeter
from creditmeter.payments.dev import DevProvider

ACCOUNT = "acme"
MODEL = "gpt-4o"
WELCOME_BONUS = 500
PACK = "pack-10k"
SUCCESS_URL = "https://example.com/billing/done"

Echo = Callable[[str], None]


def tell(meter: CreditMeter, database: str) -> None:
    """Tell the worked example on ``meter``, an empty database, then say how to explore
    what it left there."""
    Story(meter, click.echo).tell(database)
    click.echo()
    click.echo("Explore the demo's database:")
    for command in ("balance acme", "transactions list acme", "purchases acme", "verify"):
        option = "" if command == "verify" else " --database-url"
        click.echo(f"  creditmeter {command}{option} {database}")


class Story:
    def __init__(self, meter: CreditMeter, echo: Echo) -> None:
        self.meter = meter
        self.echo = echo
        self.step = 0

    def section(self, title: str) -> None:
        self.step += 1
        self.echo("")
        self.echo(f"{self.step}. {title}")

    def say(self, *lines: str) -> None:
        for line in lines:
            self.echo(f"    {line}" if line else "")

    def available(self) -> str:
        b = self.meter.balance(ACCOUNT)
        held = f" ({views.figure(b.held)} held)" if b.held else ""
        return f"available {views.figure(b.available)}{held}"

    def transaction(self, transaction_id: str | None) -> Transaction:
        for t in self.meter.transactions(ACCOUNT, limit=20).data:
            if t.id == transaction_id:
                return t
        raise CommandFailed(f"transaction {transaction_id} is not in the ledger of {ACCOUNT}")

    def tell(self, database: str) -> None:
        self.echo("creditmeter demo")
        self.echo(f"A worked example on a new database: {database}")
        self.echo("Every figure below is what the library (creditmeter.CreditMeter) returned.")
        features = self.price_book()
        self.plans()
        self.account()
        split = self.usage(features)
        self.refusals()
        self.unlimited()
        self.refund(split)
        self.section(f"Balance of {ACCOUNT} (meter.balance)")
        self.say(*views.balance(self.meter.balance(ACCOUNT), indent=0))
        self.section(f"Ledger of {ACCOUNT}, oldest first: each transaction and its postings")
        ledger = reversed(list(self.meter.iter_transactions(ACCOUNT)))
        self.say(*views.ledger(ledger, indent=0, times=False))
        self.section("Verify the books (meter.verify): invariants I1–I6 over the whole database")
        violations = self.meter.verify()
        self.say(*(str(v) for v in violations))
        self.say(views.counted(len(violations), "violation") if violations else "ok: no violations")

    def price_book(self) -> dict[str, Feature]:
        m = self.meter
        features = [
            m.put_feature("lead_collection", name="Lead collection", rates={"calls": 20}),
            m.put_feature("csv_export", name="CSV export", rates={"calls": 5}),
            m.put_feature(
                "llm.chat",
                name="LLM chat",
                rates={"input_tokens": "0.25", "output_tokens": 1},
                models={
                    "gpt-4o": {"input_tokens": "0.5", "output_tokens": 2},
                    "gpt-4o-mini": {"input_tokens": "0.03", "output_tokens": "0.12"},
                },
                multiplier="1.5",
            ),
            m.put_feature(
                "image.generate",
                name="Image generation",
                rates={"images_512": 40, "images_1024": 100},
            ),
        ]
        self.section("The price book (meter.put_feature): credits per unit of usage")
        self.say(*views.price_book(features, indent=0))
        return {f.key: f for f in features}

    def plans(self) -> None:
        m = self.meter
        plans = [
            m.put_plan(
                "starter",
                name="Starter",
                allowances={"*": 1_000},
                features=["lead_collection", "csv_export"],
            ),
            m.put_plan("pro", name="Pro", allowances={"*": 20_000}),
            m.put_plan("enterprise", name="Enterprise", allowances={"*": None}),
        ]
        self.section("Plans (meter.put_plan): a monthly allowance and the features allowed")
        self.say(*views.plans(plans, indent=0))

    def account(self) -> None:
        m = self.meter
        m.change_settings({"welcome_bonus": WELCOME_BONUS}, changed_by="demo")
        m.create_account(ACCOUNT, name="Acme Inc.", plan="pro")
        b = m.balance(ACCOUNT)
        self.section("An account on pro (meter.create_account), with a welcome bonus")
        self.say(
            f"{ACCOUNT}: {views.figure(b.available)} available = "
            f"{views.figure(b.allowance.limit or 0)} monthly allowance + "
            f"{views.figure(b.available - (b.allowance.limit or 0))} welcome bonus"
        )
        self.purchase()

    def purchase(self) -> None:
        m = self.meter
        provider = m.payments
        if not isinstance(provider, DevProvider):
            raise CommandFailed("the tour buys from the development payment provider")
        pack = m.put_package(
            PACK,
            name="10k pack",
            credits=9_000,
            bonus_credits=1_000,
            price=999,
            currency="usd",
            popular=True,
        )
        started = m.checkout(ACCOUNT, pack.id, success_url=SUCCESS_URL)
        pending = m.purchase(started.purchase_id)
        provider.complete(pending)
        m.work()
        bought = m.purchase(started.purchase_id)
        paid = views.money(bought.amount_paid, bought.price.currency)
        self.section("A credit pack bought from the development payment provider (meter.checkout)")
        self.say(*views.packages([pack]), "")
        self.say(
            f"checkout  purchase {bought.id} {pending.status.value}; its page {started.url}",
            "pay       meter.payments.complete (the page's Pay button): the provider's event",
            f"apply     meter.work(), as a worker does: {paid} paid, {bought.status.value}",
            f"          +{views.figure(bought.credits)} purchased credits: "
            f"{views.postings(self.transaction(bought.transaction_id))}",
            f"          {self.available()}",
        )

    def usage(self, features: dict[str, Feature]) -> Charge:
        m = self.meter
        estimate = {"input_tokens": 2_000, "output_tokens": 1_000}
        actual = {"input_tokens": 1_000, "output_tokens": 500}
        self.section(f"An LLM call on {MODEL}: authorize → settle (meter.holding)")
        with m.holding(ACCOUNT, "llm.chat", estimate=estimate, model=MODEL) as call:
            self.say(
                f"authorize  estimate {views.quantities(estimate)}: "
                f"{views.figure(call.hold.reserved)} credits held",
                f"           while the call runs: {self.available()}",
            )
            charge = call.settle(usage=actual)
        rule = features["llm.chat"].rule
        self.say(
            f"settle     actual {views.quantities(actual)}:",
            f"           {views.pricing(rule, actual, MODEL)} = "
            f"{views.figure(charge.credits)} charged, the other "
            f"{views.figure(call.hold.reserved - charge.charged)} released",
            f"           {self.available()}",
        )

        self.section("The rest of the month, each charged in one step (meter.charge)")
        rows = []
        for feature, calls in (("lead_collection", 750), ("csv_export", 150)):
            c = m.charge(ACCOUNT, feature, usage={"calls": calls})
            drawn = views.drawn(self.transaction(c.transaction_id))
            rows.append([feature, f"{calls} calls", "=", drawn])
        self.say(*views.table(rows, indent=0, right=[1]))
        b = m.balance(ACCOUNT)
        self.say(f"allowance {views.allowance(b.allowance)}; {self.available()}")
        self.say(*(f"warning: {w.message}" for w in b.warnings))

        images = {"images_1024": 50}
        self.section("A charge split across grants: allowance first, then bonus, then purchased")
        split = m.charge(ACCOUNT, "image.generate", usage=images)
        self.say(
            f"image.generate {views.quantities(images)}: {views.figure(split.credits)} credits",
            f"  = {views.drawn(self.transaction(split.transaction_id))}",
            self.available(),
        )
        return split

    def refusals(self) -> None:
        m = self.meter
        estimate = {"input_tokens": 4_000, "output_tokens": 2_000}
        self.section("Refusals: too few credits, or a feature the plan does not include")
        try:
            m.authorize(ACCOUNT, "llm.chat", estimate=estimate, model=MODEL)
        except InsufficientCredits as refused:
            self.say(
                f"authorize {views.quantities(estimate)} on {MODEL} raised InsufficientCredits;",
                "nothing was held or charged. Its fields:",
            )
            self.say(*views.refusal(refused, indent=2))
            self.say("")
        else:
            raise CommandFailed("the demo expected InsufficientCredits")
        m.create_account("solo", name="Solo", plan="starter")
        try:
            m.charge("solo", "llm.chat", usage=estimate, model=MODEL)
        except FeatureNotInPlan as refused:
            self.say(
                "solo, an account on starter, asks for llm.chat: FeatureNotInPlan",
                f"  {refused.message}",
            )
        else:
            raise CommandFailed("the demo expected FeatureNotInPlan")

    def unlimited(self) -> None:
        m = self.meter
        usage = {"input_tokens": 4_000, "output_tokens": 2_000}
        m.create_account("bigco", name="BigCo", plan="enterprise")
        charge = m.charge("bigco", "llm.chat", usage=usage, model=MODEL)
        allowance = m.balance("bigco").allowance
        self.section("An unlimited allowance: recorded, never refused, nothing drawn")
        self.say(
            f"bigco, on enterprise, uses {views.quantities(usage)} on {MODEL}:",
            f"  {views.figure(charge.credits)} credits recorded, "
            f"{views.figure(charge.charged)} drawn from grants; "
            f"{views.figure(allowance.used)} used this period, no limit",
        )

    def refund(self, split: Charge) -> None:
        refund = self.meter.refund(
            ACCOUNT, usage_id=split.usage_id, reason="image batch failed: refunded"
        )
        self.section("A refund (meter.refund): the image batch failed")
        self.say(
            f"{views.signed(refund.amount)} credits, back to the grants they came from:",
            f"  = {views.drawn(refund)}",
            self.available(),
        )
