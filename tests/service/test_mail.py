"""Events by email, on both engines, through a real SMTP server (aiosmtpd): to each
billing address the preferences name, rendered from the templates (the operator's first),
with the link to the preferences; retried until the server can be reached, never lost."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

import pytest

from creditmeter import CreditMeter
from creditmeter.core.errors import InvalidRequest, NotFound
from creditmeter.core.notifications import NotificationPreferences
from creditmeter.service.mail import EmailSettings, Smtp
from creditmeter.store import outbox
from tests.api.test_payments import bought, drain, starter
from tests.conftest import Clock
from tests.service.smtp import PASSWORD, USER, Inbox, certificate, free_port, smtp_server

LINK = "https://app.example/settings/{account_id}/notifications"


def settings(port: int, **more: object) -> EmailSettings:
    options: dict[str, object] = {
        "sender": "billing@creditmeter.example",
        "preferences_url": LINK,
        **more,
    }
    return EmailSettings(Smtp("127.0.0.1", port, security="none", timeout=5), **options)  # type: ignore[arg-type]


@pytest.fixture
def inbox(meter: CreditMeter) -> Iterator[Inbox]:
    with smtp_server() as server:
        meter.email = settings(server.port)
        meter.retry_random = random.Random(3)
        yield server


def event(meter: CreditMeter, topic: str, payload: dict[str, object]) -> None:
    with meter.db.write() as conn:
        outbox.enqueue(conn, f"job_{topic}", f"event.{topic}", payload, meter.clock())


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def test_a_fulfilled_purchase_sends_a_receipt_to_each_billing_address(
    meter: CreditMeter, inbox: Inbox
) -> None:
    meter.create_account("acme")
    meter.set_notification_preferences("acme", emails=["ap@acme.example", "cfo@acme.example"])
    starter(meter)

    purchase = bought(meter)

    assert sorted(r for _, [r] in inbox.envelopes) == ["ap@acme.example", "cfo@acme.example"]
    receipt = inbox.messages[0]
    assert receipt["From"] == "billing@creditmeter.example"
    assert receipt["Subject"] == "Receipt: 11,000 credits added to acme"
    text = text_of(receipt)
    assert "11,000 credits were added to account acme" in text
    assert purchase.id in text
    assert "Paid:     9.99 USD" in text, "the amount paid, from the event's minor units"
    assert "<td>9.99 USD</td>" in html_of(receipt)
    link = LINK.format(account_id="acme")
    assert f"Change which notifications you get: {link}" in text
    assert f'<a href="{link}">' in html_of(receipt)
    assert "<h1>Receipt</h1>" in html_of(receipt)
    assert receipt["List-Unsubscribe"] == f"<{link}>"
    ids = {m["Message-ID"] for m in inbox.messages}
    assert len(ids) == 2, "one message id per recipient, the same on every attempt"
    assert meter.jobs()["pending"] == 0


@pytest.mark.parametrize(
    ("amount", "currency", "paid"),
    [
        (1999, "usd", "19.99 USD"),
        (5, "eur", "0.05 EUR"),
        (123456789, "gbp", "1,234,567.89 GBP"),
        (1500, "jpy", "1,500 JPY"),
        (12345, "kwd", "12.345 KWD"),
    ],
)
def test_the_receipt_writes_the_amount_paid_by_the_currency_s_exponent(
    meter: CreditMeter, inbox: Inbox, amount: int, currency: str, paid: str
) -> None:
    meter.create_account("acme")
    meter.set_notification_preferences("acme", emails=["ap@acme.example"])
    data = {"account_id": "acme", "purchase_id": "pur_1", "credits": 100}
    event(meter, "purchase.fulfilled", {**data, "amount": amount, "currency": currency})
    drain(meter)

    [message] = inbox.messages
    assert f"Paid:     {paid}" in text_of(message).splitlines()
    assert f"<td>{paid}</td>" in html_of(message)


def test_an_event_without_a_template_of_its_own_uses_the_generic_one(
    meter: CreditMeter, inbox: Inbox
) -> None:
    meter.create_account("acme")
    meter.set_notification_preferences("acme", emails=["ap@acme.example"])
    event(meter, "purchase.failed", {"account_id": "acme", "purchase_id": "pur_1", "reason": "x"})
    drain(meter)

    [message] = inbox.messages
    assert message["Subject"] == "purchase.failed for acme"
    text = text_of(message)
    assert "reason: x" in text
    assert "purchase_id: pur_1" in text
    assert "Change which notifications you get:" in text


def test_the_operator_s_templates_replace_the_package_s(
    meter: CreditMeter, inbox: Inbox, tmp_path: Path
) -> None:
    (tmp_path / "purchase.failed.subject.txt").write_text("Payment failed: {{ data.reason }}")
    (tmp_path / "purchase.failed.html").write_text("<p>{{ data.reason }}</p>")
    meter.email = settings(inbox.port, templates=tmp_path)
    meter.create_account("acme")
    meter.set_notification_preferences("acme", emails=["ap@acme.example"])
    event(meter, "purchase.failed", {"account_id": "acme", "reason": "<declined>"})
    drain(meter)

    [message] = inbox.messages
    assert message["Subject"] == "Payment failed: <declined>"
    html = html_of(message)
    assert html.startswith("<p>&lt;declined&gt;</p>"), "HTML is escaped"
    assert "notifications" in html, "the link to the preferences, whatever the template"
    assert "reason: <declined>" in text_of(message), "the text part: the package's template"


def test_preferences_choose_the_channels_of_each_event(meter: CreditMeter, inbox: Inbox) -> None:
    meter.create_account("acme")
    meter.webhook_allow_private = True
    meter.create_webhook_endpoint("http://127.0.0.1:9/hooks")
    chosen = meter.set_notification_preferences(
        "acme",
        emails=["ap@acme.example"],
        channels={"purchase.failed": ["webhook"], "purchase.refunded": []},
    )
    assert chosen.wants("purchase.fulfilled", "email")
    assert meter.notification_preferences("acme") == chosen

    event(meter, "purchase.failed", {"account_id": "acme"})
    event(meter, "purchase.refunded", {"account_id": "acme"})
    with meter.db.write() as conn:
        assert outbox.counts(conn)["pending"] == 2
    drain(meter)

    assert inbox.messages == [], "purchase.failed goes by webhook only, refunds nowhere"
    [delivery] = meter.webhook_deliveries(meter.webhook_endpoints()[0].id)
    assert delivery.event_type == "purchase.failed"


def test_an_unreachable_smtp_server_delays_mail_and_loses_none(
    meter: CreditMeter, clock: Clock
) -> None:
    port = free_port()
    meter.email = settings(port)
    meter.retry_random = random.Random(3)
    meter.create_account("acme")
    meter.set_notification_preferences("acme", emails=["ap@acme.example"])
    event(meter, "purchase.failed", {"account_id": "acme", "reason": "x"})
    drain(meter)

    for attempt in (1, 2, 3):  # the server is down for a while: attempts 1 to 4 fail
        failed = meter.email_deliveries("job_purchase.failed")[-1]
        assert failed["attempt"] == attempt
        assert failed["error"].startswith("ConnectionRefusedError"), failed["error"]
        assert failed["next_retry_at"] > clock.now
        assert meter.jobs()["pending"] == 1
        clock.now = failed["next_retry_at"]
        drain(meter)

    with smtp_server(port) as inbox:
        clock.now = meter.email_deliveries("job_purchase.failed")[-1]["next_retry_at"]
        drain(meter)
        clock.advance(days=4)
        drain(meter)

    assert [m["To"] for m in inbox.messages] == ["ap@acme.example"]
    delivered = meter.email_deliveries("job_purchase.failed")[-1]
    assert (delivered["attempt"], delivered["error"], delivered["next_retry_at"]) == (5, None, None)
    assert meter.jobs() == {"pending": 0, "done": 2, "dead": 0}


def test_without_email_settings_mail_waits_for_them(meter: CreditMeter, clock: Clock) -> None:
    with smtp_server() as inbox:
        meter.email = settings(inbox.port)
        meter.create_account("acme")
        meter.set_notification_preferences("acme", emails=["ap@acme.example"])
        event(meter, "purchase.failed", {"account_id": "acme"})
        meter.work()  # the event's job queues the email's
        meter.email = None
        meter.work()
        [waiting] = meter.email_deliveries("job_purchase.failed")
        assert "not configured" in waiting["error"]

        meter.email = settings(inbox.port)
        clock.advance(minutes=1)
        drain(meter)
    assert len(inbox.messages) == 1


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_mail_goes_over_tls_with_the_server_s_login(
    meter: CreditMeter, tmp_path: Path, security: Literal["starttls", "tls"]
) -> None:
    cert = certificate(tmp_path)
    with smtp_server(tls=security, certificate=cert) as inbox:
        meter.email = EmailSettings(
            Smtp(
                "127.0.0.1",
                inbox.port,
                security=security,
                user=USER,
                password=PASSWORD,
                ca_file=str(cert[0]),
            ),
            sender="billing@creditmeter.example",
        )
        meter.create_account("acme")
        meter.set_notification_preferences("acme", emails=["ap@acme.example"])
        event(meter, "purchase.failed", {"account_id": "acme"})
        drain(meter)
    assert len(inbox.messages) == 1
    assert meter.email_deliveries("job_purchase.failed")[0]["error"] is None


def test_an_endpoint_disabled_is_emailed_to_the_operator(meter: CreditMeter, inbox: Inbox) -> None:
    meter.email = settings(inbox.port, operator="ops@operator.example")
    event(
        meter,
        "webhook_endpoint.disabled",
        {"endpoint_id": "whe_1", "url": "https://x.example", "failures": 20, "reason": "r"},
    )
    drain(meter)

    [message] = inbox.messages
    assert message["To"] == "ops@operator.example"
    assert message["Subject"] == "Webhook endpoint disabled: https://x.example"
    assert "CREDITMETER_OPERATOR_EMAIL" in text_of(message)


def test_bad_preferences_are_refused_and_change_nothing(meter: CreditMeter) -> None:
    meter.create_account("acme")
    for bad in (
        {"emails": ["not an address"]},
        {"emails": [f"a{n}@x.example" for n in range(11)]},
        {"channels": {"no.such.event": ["email"]}},
        {"channels": {"*": ["pigeon"]}},
    ):
        with pytest.raises(InvalidRequest):
            meter.set_notification_preferences("acme", **bad)
    assert meter.notification_preferences("acme") == NotificationPreferences("acme")
    with pytest.raises(NotFound):
        meter.set_notification_preferences("nobody", emails=["a@x.example"])


def test_setting_the_same_preferences_again_is_audited_once(meter: CreditMeter) -> None:
    meter.create_account("acme")
    for _ in range(2):
        meter.set_notification_preferences("acme", emails=["ap@acme.example"])
    entries = meter.audit_log(actions=("notification_preferences.updated",)).data
    assert len(entries) == 1
    assert entries[0].details["emails"] == {"from": [], "to": ["ap@acme.example"]}


def test_a_retried_delivery_waits_on_the_delivery_schedule(meter: CreditMeter) -> None:
    meter.email = settings(free_port())
    meter.retry_random = random.Random(3)
    meter.create_account("acme")
    meter.set_notification_preferences("acme", emails=["ap@acme.example"])
    event(meter, "purchase.failed", {"account_id": "acme"})
    drain(meter)
    [failed] = meter.email_deliveries("job_purchase.failed")
    waited = failed["next_retry_at"] - failed["created_at"]
    assert timedelta(seconds=5) <= waited <= timedelta(seconds=6)


def test_a_template_that_does_not_render_is_a_failure_retried(
    meter: CreditMeter, inbox: Inbox, tmp_path: Path, clock: Clock
) -> None:
    (tmp_path / "purchase.failed.txt").write_text("{{ data.reason | no_such_filter }}")
    meter.email = settings(inbox.port, templates=tmp_path)
    meter.create_account("acme")
    meter.set_notification_preferences("acme", emails=["ap@acme.example"])
    event(meter, "purchase.failed", {"account_id": "acme", "reason": "x"})
    drain(meter)
    [failed] = meter.email_deliveries("job_purchase.failed")
    assert failed["error"].startswith("template: TemplateAssertionError"), failed["error"]

    (tmp_path / "purchase.failed.txt").unlink()  # the operator fixes it
    meter.email = settings(inbox.port, templates=tmp_path / "fixed")
    clock.now = failed["next_retry_at"]
    drain(meter)
    assert len(inbox.messages) == 1
