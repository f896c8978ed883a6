"""Shapes every router uses: strict integers for credits, text and metadata PostgreSQL can
store, pages, errors, idempotency."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from fastapi import Header, Response
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainValidator,
    StrictInt,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, to_json
from typing_extensions import TypeAliasType

from creditmeter.core import metadata
from creditmeter.core.errors import InvalidRequest
from creditmeter.core.identifiers import IDENTIFIER_PATTERN
from creditmeter.core.types import MAX_CREDITS

T = TypeVar("T")

EXACT_FLOAT_LIMIT = 2**53


def whole_number(value: object) -> object:
    """A JSON number without a fractional part (``2000.0``) is the integer it equals, as
    JSON Schema says; a fraction, a string or a boolean stays refused."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= EXACT_FLOAT_LIMIT:
        return int(value)
    return value


Whole = BeforeValidator(whole_number)
"""Takes a whole JSON number (``2000.0``) as the integer it equals. It goes after the
``Field`` with the bounds, ``Annotated[StrictInt, Field(ge=…, le=…), Whole]``: before it,
pydantic renders them as unknown ``ge``/``le`` keywords, not ``minimum``/``maximum``."""

Credits = Annotated[
    StrictInt, Field(ge=0, le=MAX_CREDITS, description="Credits: an integer"), Whole
]
PositiveCredits = Annotated[
    StrictInt, Field(ge=1, le=MAX_CREDITS, description="Credits: an integer > 0"), Whole
]

Identifier = Annotated[
    str,
    Field(
        pattern=IDENTIFIER_PATTERN,
        description="1 to 255 letters, digits and . _ : @ + = -",
        examples=["acme"],
    ),
]

NO_NUL = r"^[^\x00]+$"
"""Text PostgreSQL can store: anything but NUL."""
Text = Annotated[str, Field(min_length=1, max_length=255, pattern=NO_NUL)]
MetadataKey = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class _NoOtherKeys:
    """In the JSON Schema of a mapping whose keys have a pattern, refuse other keys rather
    than leave them unconstrained (``patternProperties`` alone does)."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler.resolve_ref_schema(handler(schema))
        json_schema["additionalProperties"] = False
        return json_schema


if TYPE_CHECKING:  # mypy cannot resolve the recursive alias
    MetadataValue = Any
else:  # recursive, for the JSON Schema only: ``_metadata`` validates
    MetadataValue = TypeAliasType(
        "MetadataValue",
        bool
        | int
        | float
        | MetadataKey
        | list["MetadataValue"]
        | Annotated[dict[MetadataKey, "MetadataValue"], _NoOtherKeys()]
        | None,
    )


def _metadata(value: object) -> dict[str, Any]:
    """Any JSON object within metadata's bounds that both engines can store
    (core/metadata.py); what it passes is a 422 naming the bound."""
    if not isinstance(value, dict):
        raise ValueError("metadata is a JSON object")
    try:
        return metadata.checked(value)
    except InvalidRequest as error:
        raise ValueError(error.message) from None


Metadata = Annotated[
    dict[str, Any],
    PlainValidator(
        _metadata,
        json_schema_input_type=Annotated[dict[MetadataKey, MetadataValue], _NoOtherKeys()],
    ),
    Field(
        description=f"Free-form JSON kept with the record: at most {metadata.MAX_DEPTH} "
        f"levels deep, {metadata.MAX_KEYS} keys, {metadata.MAX_TEXT} characters a key or "
        f"text and {metadata.MAX_BYTES} bytes as JSON."
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


def answer(model: BaseModel) -> Response:
    """``model`` as the JSON response FastAPI makes of a response model, serialized once.

    An endpoint returning this (with ``response_model=`` the model's class, for the OpenAPI
    document) spares FastAPI validating the model it has just built a second time, which
    for a plain ``def`` endpoint is one more trip to the thread pool per request."""
    return Response(model.__pydantic_serializer__.to_json(model), media_type="application/json")


def answer_data(data: dict[str, Any]) -> Response:
    """Plain data (dicts, lists, strings, integers, None) as JSON, serialized as ``answer``
    serializes a model: for a body too large to build as models cheaply, whose endpoint
    documents it with ``response_model=`` all the same."""
    return Response(to_json(data), media_type="application/json")
