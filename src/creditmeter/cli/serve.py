"""``creditmeter serve``: the HTTP service under uvicorn.

Configuration comes from ``CREDITMETER_*`` variables (:class:`ServerSettings`); options
given on the command line override them. Each worker builds its application with the
factory ``creditmeter.api.app:create_server_app``, which reads the same variables, so the
effective database URL is put into the environment the workers inherit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Final

import click
import uvicorn
from pydantic import ValidationError
from uvicorn.config import LOGGING_CONFIG

from creditmeter.api.config import ServerSettings
from creditmeter.api.observability import JsonFormatter
from creditmeter.cli import workers
from creditmeter.cli.connection import DATABASE_URL_ENV, shown
from creditmeter.cli.failures import CommandFailed
from creditmeter.store.database import Database
from creditmeter.store.migrate import current_revision, head_revision, upgrade

APP_FACTORY: Final = "creditmeter.api.app:create_server_app"
LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug", "trace")
LOG_FORMATS: Final = ("json", "text")
PAYMENTS: Final = ("off", "dev", "stripe")
METRICS_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def server_settings(**overrides: object) -> ServerSettings:
    """Settings from the environment, with the options that were given (not ``None``),
    checked together."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return ServerSettings(**given)  # type: ignore[arg-type]
    except ValidationError as error:
        problem = error.errors()[0]
        if not problem["loc"]:  # a rule over several variables
            raise CommandFailed(str(problem.get("ctx", {}).get("error", problem["msg"]))) from None
        name = "CREDITMETER_" + str(problem["loc"][0]).upper()
        raise CommandFailed(f"{name}: {problem['msg']}") from None


def prepare_schema(database_url: str, *, migrate: bool) -> str:
    """Bring the schema up to date (or, with ``migrate=False``, insist that it is); says
    what it did."""
    db = Database(database_url)
    try:
        before, head = current_revision(db), head_revision()
        if before == head:
            return f"schema at revision {head}"
        if not migrate:
            raise CommandFailed(
                f"the schema of {shown(database_url)} is at revision {before or 'none'}, "
                f"this creditmeter needs {head}: run creditmeter migrate, "
                "or serve without --no-migrate"
            )
        upgrade(db)
        return f"schema migrated from {before or 'empty'} to revision {head}"
    finally:
        db.dispose()


def base_url(host: str, port: int) -> str:
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    return f"http://{shown_host}:{port}"


def json_logging(level: str) -> dict[str, Any]:
    """uvicorn's ``log_config`` for JSON lines on standard error, one per request (logged
    by the application, with its request id) and one per server event; each worker
    process applies it."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    logger = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{JsonFormatter.__module__}.{JsonFormatter.__qualname__}"}},
        "handlers": {"default": handler},
        "loggers": {
            "creditmeter": logger,
            "uvicorn": logger,
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


def exported(settings: ServerSettings) -> dict[str, str]:
    """The variables that give the workers the settings an option may have changed: the
    development provider's checkout page links to the host and port served."""
    return {
        DATABASE_URL_ENV: settings.database_url,
        "CREDITMETER_POOL_SIZE": str(settings.pool_size),
        "CREDITMETER_HOST": settings.host,
        "CREDITMETER_PORT": str(settings.port),
        "CREDITMETER_PAYMENTS": settings.payments,
        "CREDITMETER_WORKER": str(settings.worker).lower(),
    }


DEV_PAYMENTS_WARNING: Final = (
    "WARNING: payments by the development provider: no money moves, and anyone shown a "
    "checkout can pay it and get its credits. For trying the flow only; in production set "
    "CREDITMETER_PAYMENTS=stripe, or leave payments off."
)


def payments_lines(settings: ServerSettings) -> list[str]:
    """Where credits are sold, and who applies what the payment provider says."""
    base = settings.base_url()
    if settings.payments == "off":
        lines = [
            "  payments  off: checkouts and webhooks answer 503 payments_not_configured "
            "(CREDITMETER_PAYMENTS=stripe sells through Stripe)"
        ]
    elif settings.payments == "dev":
        lines = [
            "  payments  the development provider (no keys, no network): "
            f"checkout pages on this server, {base}/dev/checkout/<purchase>"
        ]
    else:
        at = f" at {settings.stripe_api_base}" if settings.stripe_api_base else ""
        lines = [f"  payments  Stripe{at}; its webhook endpoint is {base}/v1/webhooks/stripe"]
    if settings.worker:
        lines.append(
            "  jobs      a worker thread in each server process applies payment events and "
            f"charges auto-recharges (due jobs looked for every {settings.worker_interval:g} s)"
        )
    else:
        lines.append(
            "  jobs      no worker thread (CREDITMETER_WORKER=false): run creditmeter worker "
            "beside the server"
        )
    return lines


def run(settings: ServerSettings, *, log_format: str = "json") -> None:
    """Serve until interrupted. The workers read their settings from the environment;
    with several of them, their metrics are added up in a directory they share."""
    os.environ.update(exported(settings))
    metrics_dir = None
    if settings.workers > 1 and METRICS_DIR_ENV not in os.environ:
        metrics_dir = tempfile.mkdtemp(prefix="creditmeter-metrics-")
        os.environ[METRICS_DIR_ENV] = metrics_dir
    json_logs = log_format == "json"
    config: dict[str, Any] = {
        "app": APP_FACTORY,
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": json_logging(settings.log_level) if json_logs else LOGGING_CONFIG,
        "access_log": not json_logs,
        "timeout_graceful_shutdown": 10,
    }
    try:
        if settings.workers > 1 and workers.supported():
            workers.Supervisor(config, settings.workers, settings.host, settings.port).run()
        else:
            uvicorn.run(**config, workers=settings.workers)
    except KeyboardInterrupt:
        pass  # Ctrl-C: uvicorn has shut down already
    finally:
        if metrics_dir is not None:
            os.environ.pop(METRICS_DIR_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)


@click.command()
@click.option("--host", help="address to listen on (default: $CREDITMETER_HOST, else 127.0.0.1)")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="port (default: $CREDITMETER_PORT, else 8000)"
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="worker processes (default: $CREDITMETER_WORKERS, else 1)",
)
@click.option(
    "--database-url",
    metavar="URL",
    help=f"database to serve (default: ${DATABASE_URL_ENV}, else sqlite:///creditmeter.db)",
)
@click.option(
    "--no-migrate",
    is_flag=True,
    help="do not migrate the schema; refuse to start if it is not current",
)
@click.option(
    "--payments",
    type=click.Choice(PAYMENTS),
    help="where credits are sold (default: $CREDITMETER_PAYMENTS, else off); "
    "dev: the development provider, for trying the flow",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), help="default: info")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="json",
    show_default=True,
    help="JSON lines (one per request, with its request id) or uvicorn's text",
)
def serve(
    host: str | None,
    port: int | None,
    workers: int | None,
    database_url: str | None,
    no_migrate: bool,
    payments: str | None,
    log_level: str | None,
    log_format: str,
) -> None:
    """Serve the HTTP API with uvicorn until interrupted (Ctrl-C).

    An empty or older database is migrated first unless --no-migrate. The superadmin key
    in $CREDITMETER_ADMIN_KEY, if set, is accepted as given; create the other keys with
    creditmeter api-keys create.
    """
    settings = server_settings(
        host=host,
        port=port,
        workers=workers,
        database_url=database_url,
        payments=payments,
        log_level=log_level,
    )
    schema = prepare_schema(settings.database_url, migrate=not no_migrate)
    url = base_url(settings.host, settings.port)
    workers_text = "1 worker" if settings.workers == 1 else f"{settings.workers} workers"
    click.echo(f"creditmeter serving {url} ({workers_text})")
    click.echo(f"  database  {shown(settings.database_url)}, {schema}")
    click.echo(f"  API docs  {url}/docs")
    for line in payments_lines(settings):
        click.echo(line)
    if settings.payments == "dev":
        click.secho(DEV_PAYMENTS_WARNING, fg="red", bold=True, err=True)
    if settings.admin_key is None:
        click.echo("  no CREDITMETER_ADMIN_KEY set: use keys made by creditmeter api-keys create")
    run(settings, log_format=log_format)
