"""Shapes every router uses: strict integers for credits, pages, errors, idempotency."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Header
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from creditmeter.core.identifiers import IDENTIFIER_PATTERN

T = TypeVar("T")

EXACT_FLOAT_LIMIT = 2**53


def _whole_number(value: object) -> object:
    """A JSON number without a fractional part (``2000.0``) is the integer it equals, as
    JSON Schema says; a fraction, a string or a boolean stays refused."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= EXACT_FLOAT_LIMIT:
        return int(value)
    return value


def integer(*, ge: int = 0, le: int = 2**62, description: str | None = None) -> Any:
    """An integer from ``ge`` to ``le``: a JSON number with no fractional part (``2000.0``
    counts, as JSON Schema says), never a string, a fraction or a boolean."""
    return Annotated[
        StrictInt, Field(ge=ge, le=le, description=description), BeforeValidator(_whole_number)
    ]


Credits = integer(description="Credits: an integer")

Identifier = Annotated[
    str,
    Field(
        pattern=IDENTIFIER_PATTERN,
        description="1 to 255 letters, digits and . _ : @ + = -",
        examples=["acme"],
    ),
]

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
