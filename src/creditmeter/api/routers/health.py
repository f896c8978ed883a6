"""Liveness."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


@router.get("/healthz")
def healthz() -> Health:
    """The process is up and serving; it does not touch the database."""
    return Health(status="ok")
