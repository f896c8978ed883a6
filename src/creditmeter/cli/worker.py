"""``creditmeter worker``: the outbox's jobs (payment events to apply, auto-recharges to
charge, events to deliver to webhook endpoints) run in a process of their own, beside or
instead of the worker thread of each server. Any number of workers may run at once: each
job is leased to one of them."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

import click

from creditmeter.api.config import ServerSettings
from creditmeter.api.observability import JsonFormatter
from creditmeter.cli import views
from creditmeter.cli.connection import database_url_option, opened, shown
from creditmeter.cli.serve import LOG_FORMATS, server_settings
from creditmeter.events.jobs import Worker
from creditmeter.meter import CreditMeter

BATCH: Final = 20
LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")
TEXT_LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def provider_name(settings: ServerSettings) -> str:
    if settings.payments == "off":
        return "no provider (CREDITMETER_PAYMENTS is not set: recharges fail)"
    if settings.payments == "dev":
        return "the development provider"
    return "Stripe" + (f" at {settings.stripe_api_base}" if settings.stripe_api_base else "")


def run_until_idle(meter: CreditMeter) -> int:
    """Run due jobs until none is due (the jobs they queue included); how many ran."""
    total = 0
    while ran := meter.work(limit=BATCH):
        total += ran
    return total


def run_until_stopped(meter: CreditMeter, interval: float) -> None:
    """Run the worker thread until SIGINT or SIGTERM; it finishes the jobs in hand."""
    stopping = threading.Event()

    def stop(_signal: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    worker = Worker(meter, interval=interval, batch=BATCH)
    worker.start()
    try:
        stopping.wait()
    finally:
        worker.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def logging_to_stderr(log_format: str, level: str) -> Iterator[None]:
    """creditmeter's log records (jobs that failed, events handled) on standard error."""
    handler = logging.StreamHandler(sys.stderr)
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_LOG_FORMAT))
    logger = logging.getLogger("creditmeter")
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


@click.command()
@database_url_option
@click.option("--once", is_flag=True, help="run the jobs due now, until none is, then exit")
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="seconds between looks for due jobs (default: $CREDITMETER_WORKER_INTERVAL, else 1)",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="json", show_default=True)
def worker(
    database_url: str | None,
    once: bool,
    interval: float | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run the outbox's jobs until interrupted (Ctrl-C or SIGTERM): apply the payment
    provider's events, charge auto-recharges, deliver the events to webhook endpoints
    and by email (CREDITMETER_SMTP_HOST).

    Each server runs them in a thread of its own too, unless CREDITMETER_WORKER=false.
    Payments go through the provider that CREDITMETER_PAYMENTS selects, as in serve. A
    job runs at least once, and again after a failure, with backoff.
    """
    settings = server_settings(database_url=database_url, worker_interval=interval)
    provider = settings.payment_provider()
    with (
        logging_to_stderr(log_format, log_level),
        opened(settings.database_url, payments=provider) as meter,
    ):
        meter.webhook_timeout = settings.webhook_timeout
        meter.webhook_disable_after = settings.webhook_disable_after
        meter.webhook_allow_private = settings.webhook_allow_private
        meter.email = settings.email_settings()
        if once:
            ran = run_until_idle(meter)
            left = meter.jobs()
            click.echo(
                f"ok: {views.counted(ran, 'job')} ran; "
                f"{views.figure(left['pending'])} pending, {views.figure(left['dead'])} dead"
            )
            return
        click.echo(
            f"creditmeter worker on {shown(settings.database_url)}: payments through "
            f"{provider_name(settings)}, due jobs looked for every "
            f"{settings.worker_interval:g} s; Ctrl-C or SIGTERM stops it"
        )
        run_until_stopped(meter, settings.worker_interval)
    click.echo("creditmeter worker stopped")
