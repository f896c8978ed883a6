"""An account to meter and the two ways of reaching its meter: the library itself and the
HTTP client (over the API app on the same database), each on both engines."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings
from creditmeter.client import CreditMeterClient
from creditmeter.integrations._metering import Meter

ACCOUNT = "acme"
CREDITS = 100_000
CHAT = "llm.chat"
"""Prices every token kind: input 1, output 2, cached 0.5, cache writes 2, reasoning 3."""
PLAIN = "llm.plain"
"""Prices input (1) and output (2) tokens only."""


@pytest.fixture
def account(meter: CreditMeter) -> str:
    meter.put_feature(
        CHAT,
        rates={
            "input_tokens": 1,
            "output_tokens": 2,
            "cached_tokens": "0.5",
            "cache_write_tokens": 2,
            "reasoning_tokens": 3,
        },
    )
    meter.put_feature(PLAIN, rates={"input_tokens": 1, "output_tokens": 2})
    meter.create_account(ACCOUNT)
    meter.grant(ACCOUNT, CREDITS, source="purchase")
    return ACCOUNT


@pytest.fixture(params=["library", "client"])
def wrapped_meter(request: pytest.FixtureRequest, meter: CreditMeter) -> Iterator[Meter]:
    """The meter a wrapper is given: the library, or the HTTP client of an app on it."""
    if request.param == "library":
        yield meter
        return
    settings = ServerSettings(admin_key=SecretStr("a" * 40), worker=False, rate_limits=False)
    service_key = meter.create_api_key("service")[1]
    with TestClient(create_app(settings, meter=meter)) as app:

        def forward(request: httpx2.Request) -> httpx2.Response:
            answer = app.request(
                request.method,
                str(request.url.copy_with(scheme=None, host=None, port=None)),
                content=request.content,
                headers=dict(request.headers),
            )
            return httpx2.Response(answer.status_code, json=answer.json())

        transport = httpx2.MockTransport(forward)
        with CreditMeterClient("http://meter.test", service_key, transport=transport) as client:
            yield client


Handler = Callable[[httpx2.Request], httpx2.Response]


def sse(*events: Any, done: bool = True) -> bytes:
    """A server-sent event stream of JSON events (``(name, data)`` pairs for named ones)."""
    lines = []
    for event in events:
        if isinstance(event, tuple):
            lines.append(f"event: {event[0]}\ndata: {json.dumps(event[1])}\n\n")
        else:
            lines.append(f"data: {json.dumps(event)}\n\n")
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


class Provider:
    """A provider's API over a mock transport: it answers each request with the next
    answer given, and keeps the requests' JSON bodies."""

    def __init__(self, *answers: httpx2.Response) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(json.loads(request.content))
        return self.answers.pop(0)

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self)

    def async_transport(self) -> httpx2.MockTransport:
        async def answer(request: httpx2.Request) -> httpx2.Response:
            await request.aread()
            return self(request)

        return httpx2.MockTransport(answer)


def streamed(body: bytes) -> httpx2.Response:
    return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
