"""Prometheus metrics and structured JSON logs, each request with its id.

With several server processes, set ``PROMETHEUS_MULTIPROC_DIR`` to a directory they
share (``creditmeter serve`` does) and every scrape reports the sum of all of them.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditmeter.core.records import Charge
from creditmeter.meter import CreditMeter
from creditmeter.store.database import LockTimeout

REQUEST_ID = "X-Request-ID"
log = logging.getLogger("creditmeter.api")

REQUESTS = Counter(
    "creditmeter_http_requests_total",
    "HTTP requests answered, by method, route and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "creditmeter_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
CREDITS_CHARGED = Counter(
    "creditmeter_credits_charged_total",
    "Credits charged by usage (drawn from grants or taken on as debt), by feature.",
    ["feature"],
)
UNKNOWN_MODELS = Counter(
    "creditmeter_unknown_model_usage_total",
    "Usage of a model its feature has no rates for, priced at the feature's default "
    "rates (the feature's unknown_models is default_rates), by feature.",
    ["feature"],
)
REFUSALS = Counter(
    "creditmeter_refusals_total",
    "Operations refused, by reason (insufficient_credits, feature_not_in_plan, …).",
    ["reason"],
)
GROUPS = Histogram(
    "creditmeter_group_commit_operations",
    "Authorizes, settles, releases and charges applied by one commit: 1 for one that ran "
    "on its own, more for a group of concurrent ones (docs/group-commit.md).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)


@cache
def _requests(method: str, route: str, status: int) -> Counter:
    """The series of a method, route and status, looked up once rather than with a lock on
    every request (as the latency's below)."""
    return REQUESTS.labels(method, route, str(status))


@cache
def _latency(method: str, route: str) -> Histogram:
    return LATENCY.labels(method, route)


def count_charge(charge: Charge) -> None:
    CREDITS_CHARGED.labels(charge.feature).inc(charge.charged + charge.debited)
    if charge.unknown_model:
        UNKNOWN_MODELS.labels(charge.feature).inc()


def count_group(operations: int) -> None:
    GROUPS.observe(operations)


def count_refusal(reason: str) -> None:
    REFUSALS.labels(reason).inc()


class DatabaseGauges(Collector):
    """What is read from the database at scrape time: the holds pending (not yet past
    their expiry, on the meter's clock), and whether the database answered. A database
    that does not answer leaves the holds out and the scrape whole, so the request
    counters that show an outage are there during it."""

    def __init__(self, meter: CreditMeter) -> None:
        self.meter = meter

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pending: int | None = self.meter.pending_holds()
        except (DBAPIError, LockTimeout):
            pending = None
        yield GaugeMetricFamily(
            "creditmeter_database_up",
            "1 if the database answered this scrape's query, else 0.",
            value=0 if pending is None else 1,
        )
        if pending is not None:
            yield GaugeMetricFamily(
                "creditmeter_holds_pending",
                "Holds authorized, not yet settled or released, and not past their expiry.",
                value=pending,
            )


def exposition(meter: CreditMeter) -> bytes:
    """The metrics in Prometheus text format, of every server process when several run."""
    registry = CollectorRegistry()
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in (REQUESTS, LATENCY, CREDITS_CHARGED, UNKNOWN_MODELS, REFUSALS, GROUPS):
            registry.register(collector)
    registry.register(DatabaseGauges(meter))
    return generate_latest(registry)


def metrics_response(meter: CreditMeter) -> Response:
    return Response(exposition(meter), media_type=CONTENT_TYPE_LATEST)


class Observer:
    """Plain ASGI middleware: every HTTP request gets an id (``X-Request-ID``, taken from
    the request if it has one), a count and a latency by route and status, and one JSON
    log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500  # unless a response starts

        async def respond(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, respond)
        finally:
            elapsed = time.perf_counter() - started
            route = str(getattr(scope.get("route"), "path", "unmatched"))
            method = scope["method"]
            _requests(method, route, status).inc()
            _latency(method, route).observe(elapsed)
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "api_key": getattr(state.get("api_key"), "id", None),
                },
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def install(app: FastAPI) -> None:
    app.add_middleware(Observer)


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}
"""A record's own attributes (and uvicorn's coloured copy of the message), which are not
extras to log."""
_ENCODER = json.JSONEncoder(default=str)
"""``json.dumps(entry, default=str)`` without making an encoder for every line."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)
