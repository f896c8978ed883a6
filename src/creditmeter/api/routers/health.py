"""Liveness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel

from creditmeter.api.auth import Meter, same_secret
from creditmeter.api.errors import Unauthenticated
from creditmeter.api.observability import metrics_response
from creditmeter.api.schemas.common import errors

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


@router.get("/healthz")
def healthz() -> Health:
    """The process is up and serving; it does not touch the database."""
    return Health(status="ok")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **errors(401)},
)
def metrics(request: Request, meter: Meter) -> Response:
    """Prometheus metrics: requests and latencies by route, credits charged by feature,
    refusals by reason, holds pending, whether the database answered. With
    `CREDITMETER_METRICS_TOKEN` set, only for `Authorization: Bearer <that token>` (else
    401). It scrapes while the database is down: `creditmeter_database_up` is then 0 and
    the pending holds are left out."""
    token: str | None = request.app.state.metrics_token
    if token is not None:
        scheme, given = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme.lower() != "bearer" or not same_secret(given, token):
            raise Unauthenticated("/metrics needs the metrics token: Authorization: Bearer <token>")
    return metrics_response(meter)
