"""Shapes every router uses: strict integers for credits, pages, errors, idempotency."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Header
from pydantic import BaseModel, ConfigDict, Field, StrictInt

T = TypeVar("T")

Credits = Annotated[StrictInt, Field(ge=0, le=2**62, description="Credits: an integer")]
Identifier = Annotated[str, Field(min_length=1, max_length=255)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retrying with the same key returns the first response and changes "
        "nothing; the same key with a different body is 409.",
    ),
]


class Body(BaseModel):
    """A request body: unknown fields are refused, nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class ErrorDetail(BaseModel):
    type: str
    message: str
    model_config = ConfigDict(extra="allow")


class ErrorOut(BaseModel):
    error: ErrorDetail


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error codes an endpoint can answer with."""
    return {code: {"model": ErrorOut} for code in codes}
