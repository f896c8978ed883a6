"""Email notifications: each event that an account's preferences send by email becomes
one ``email.deliver`` job per address, queued when the worker runs the event; each job
renders the event's templates and sends it by SMTP, retried on the delivery schedule, so
a mail server that cannot be reached delays mail and loses none.

Templates are Jinja2, ``<event type>.subject.txt``, ``.txt`` and ``.html`` (``default.*``
for an event without its own), looked up first in the operator's directory, then in the
package's ``templates/email``. Every message ends with the link to change the
preferences, whatever the template says.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Final, Literal

import jinja2
import markupsafe
from sqlalchemy.engine import Connection

from creditmeter.core import notifications as rules
from creditmeter.core.audit import Action, Actor
from creditmeter.core.errors import NotFound
from creditmeter.core.ids import new_id
from creditmeter.core.notifications import NotificationPreferences
from creditmeter.core.payments import amount_text
from creditmeter.core.webhooks import EVENT_TYPES
from creditmeter.service import audit, jobs
from creditmeter.store import accounts as accounts_store
from creditmeter.store import notifications as store
from creditmeter.store import outbox
from creditmeter.store.outbox import Job

DELIVER_JOB: Final = "email.deliver"
OPERATOR_EVENTS: Final = frozenset({"webhook_endpoint.disabled"})
"""Events about creditmeter itself: emailed to the operator's address, not an account's."""
TEMPLATES: Final = Path(__file__).parent / "templates" / "email"
Security = Literal["starttls", "tls", "none"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int = 587
    security: Security = "starttls"
    """``starttls`` (upgrade a plain connection), ``tls`` (TLS from the start, port 465
    usually) or ``none`` (a relay on this machine or network)."""
    user: str | None = None
    password: str | None = None
    timeout: float = 30.0
    ca_file: str | None = None
    """A CA bundle that the server's certificate is checked against instead of the
    system's (a private CA)."""

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


@dataclass(frozen=True)
class EmailSettings:
    smtp: Smtp
    sender: str
    """The ``From`` address."""
    operator: str | None = None
    """Where operator events (an endpoint disabled …) are emailed; ``None``: nowhere."""
    templates: Path | None = None
    """A directory whose templates replace the package's, name for name."""
    preferences_url: str = ""
    """Where an account changes its preferences; ``{account_id}`` is replaced."""


# Preferences.


def preferences(conn: Connection, account_id: str) -> NotificationPreferences:
    """An account's preferences (the defaults if it never set any)."""
    if accounts_store.get(conn, account_id) is None:
        raise NotFound("account", account_id)
    return store.get(conn, account_id) or NotificationPreferences(account_id)


def put_preferences(
    conn: Connection,
    now: datetime,
    account_id: str,
    *,
    emails: object,
    channels: object,
    actor: Actor,
) -> NotificationPreferences:
    """Replace an account's preferences; the same request again changes nothing."""
    current = preferences(conn, account_id)
    changed = NotificationPreferences(
        account_id=account_id,
        emails=rules.emails(emails),
        channels=rules.channels(channels, EVENT_TYPES),
        updated_at=now,
    )
    before, after = _shown(current), _shown(changed)
    diff = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
    if not diff and current.updated_at is not None:
        return current
    store.put(conn, changed)
    audit.record(
        conn,
        now,
        actor,
        Action.NOTIFICATION_PREFERENCES_UPDATED,
        subject_id=account_id,
        details=diff,
    )
    return changed


def _shown(p: NotificationPreferences) -> dict[str, Any]:
    return {"emails": list(p.emails), "channels": {k: list(v) for k, v in p.channels.items()}}


# Fan-out and delivery.


def fan_out(conn: Connection, now: datetime, job: Job, settings: EmailSettings) -> int:
    """Queue an ``email.deliver`` job per address that should get the event of ``job``;
    how many. Run again for the same job, it queues none twice."""
    event_type = job.topic.removeprefix(jobs.EVENT_PREFIX)
    account_id = job.payload.get("account_id")
    if event_type in OPERATOR_EVENTS:
        recipients: tuple[str, ...] = (settings.operator,) if settings.operator else ()
        account_id = None
    elif isinstance(account_id, str):
        found = store.get(conn, account_id) or NotificationPreferences(account_id)
        recipients = found.emails if found.wants(event_type, rules.EMAIL) else ()
    else:
        recipients = ()
    body = {
        "id": job.id,
        "type": event_type,
        "created_at": job.created_at.isoformat().replace("+00:00", "Z"),
        "data": dict(job.payload),
    }
    queued = 0
    for to in recipients:
        queued += outbox.enqueue(
            conn,
            new_id("job"),
            DELIVER_JOB,
            {"to": to, "account_id": account_id, "event": body},
            now,
            dedupe_key=f"email:{job.id}:{to}",
        )
    return queued


def message(job: Job, settings: EmailSettings) -> EmailMessage:
    """The email of a delivery job: subject, text and HTML from the event's templates,
    the link to the preferences appended to both."""
    event = job.payload["event"]
    account_id = job.payload.get("account_id")
    link = settings.preferences_url.replace("{account_id}", str(account_id or ""))
    context = {
        "event": event,
        "data": event["data"],
        "account_id": account_id,
        "preferences_url": link,
        "created_at": datetime.fromisoformat(event["created_at"].replace("Z", "+00:00")),
    }
    env = _environment(settings.templates)
    subject = " ".join(_render(env, event["type"], "subject.txt", context).split())
    text = _render(env, event["type"], "txt", context).rstrip()
    html = _render(env, event["type"], "html", context).rstrip()
    if account_id is None:
        footer = "You get this as the operator of creditmeter (CREDITMETER_OPERATOR_EMAIL)."
    else:
        footer = f"Change which notifications you get: {link}"
    text += f"\n\n--\n{footer}\n"
    html_footer = f'<hr>\n<p class="preferences">{markupsafe.escape(footer)}</p>\n'
    if account_id is not None:
        href = markupsafe.escape(link)
        html_footer += f'<p><a href="{href}">Notification preferences</a></p>\n'
    head, body_end, tail = html.rpartition("</body>")
    html = f"{head}{html_footer}{body_end}{tail}" if body_end else f"{html}\n{html_footer}"
    mail = EmailMessage()
    mail["From"] = settings.sender
    mail["To"] = job.payload["to"]
    mail["Subject"] = subject
    mail["Date"] = format_datetime(context["created_at"])
    recipient = hashlib.sha256(str(job.payload["to"]).encode()).hexdigest()[:12]
    mail["Message-ID"] = f"<{event['id']}.{recipient}@creditmeter>"
    if account_id is not None and link:
        mail["List-Unsubscribe"] = f"<{link}>"
    mail.set_content(text)
    mail.add_alternative(html, subtype="html")
    return mail


def attempt(job: Job, settings: EmailSettings) -> str | None:
    """Render the job's email and send it; the error that stopped it, if any (a template
    that does not render is one too, retried like the others once it is fixed)."""
    try:
        mail = message(job, settings)
    except (jinja2.TemplateError, OSError, ValueError, KeyError, TypeError) as error:
        return f"template: {type(error).__name__}: {error}"
    return send(mail, settings.smtp)


def send(mail: EmailMessage, smtp: Smtp) -> str | None:
    """Hand ``mail`` to the SMTP server; the error that stopped it, if any."""
    try:
        client: smtplib.SMTP
        if smtp.security == "tls":
            context = smtp.tls_context()
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        with client:
            if smtp.security == "starttls":
                client.starttls(context=smtp.tls_context())
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            client.send_message(mail)
    except (OSError, smtplib.SMTPException) as error:
        return f"{type(error).__name__}: {error}"
    return None


def record(
    conn: Connection, now: datetime, job: Job, error: str | None, rng: random.Random | None
) -> None:
    """Log an attempt and finish its job, or schedule its retry."""
    retry = None if error is None else jobs.retry_at(job, now, rng)
    event = job.payload["event"]
    store.add_delivery(
        conn,
        new_id("emd"),
        event_id=str(event["id"]),
        event_type=str(event["type"]),
        account_id=job.payload.get("account_id"),
        recipient=str(job.payload["to"]),
        attempt=job.attempts,
        error=error,
        next_retry_at=retry,
        created_at=now,
    )
    if error is None:
        outbox.finish(conn, job, now)
        return
    log.warning(
        "email of %s to %s failed (attempt %d): %s",
        event["id"],
        job.payload["to"],
        job.attempts,
        error,
    )
    outbox.fail(conn, job, error, now, retry)


@functools.lru_cache(maxsize=8)
def _environment(directory: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if directory is not None:
        loaders.append(jinja2.FileSystemLoader(directory))
    loaders.append(jinja2.FileSystemLoader(TEMPLATES))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
        keep_trailing_newline=True,
    )
    env.filters["figure"] = lambda n: f"{n:,}" if isinstance(n, int) else n
    env.filters["money"] = _money
    return env


def _money(amount: object, currency: object) -> str:
    """``{{ 1999 | money("usd") }}`` is ``19.99 USD``, ``1500 jpy`` ``1,500 JPY``: the
    currency's exponent applied to the integer minor units, never a float."""
    if not isinstance(amount, int) or isinstance(amount, bool) or not isinstance(currency, str):
        raise TypeError(f"money needs minor units and a currency, not {amount!r} {currency!r}")
    return f"{amount_text(amount, currency)} {currency.upper()}"


def _render(env: jinja2.Environment, event_type: str, kind: str, context: Mapping[str, Any]) -> str:
    template = env.select_template([f"{event_type}.{kind}", f"default.{kind}"])
    return template.render(context)
