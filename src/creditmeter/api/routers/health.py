"""Liveness."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from creditmeter.api.auth import Meter
from creditmeter.api.observability import metrics_response

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


@router.get("/healthz")
def healthz() -> Health:
    """The process is up and serving; it does not touch the database."""
    return Health(status="ok")


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(meter: Meter) -> Response:
    """Prometheus metrics: requests and latencies by route, credits charged by feature,
    refusals by reason, holds pending."""
    return metrics_response(meter)
