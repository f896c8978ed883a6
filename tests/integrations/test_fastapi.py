"""The FastAPI dependency in an app of its own: refused before the endpoint runs, settled
after it, released when it raises. (No ``from __future__ import annotations``: FastAPI
reads the endpoints' annotations, which name a local dependency.)"""

from collections.abc import Iterator
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.integrations._metering import Meter
from creditmeter.integrations.fastapi import HeldRequest, install, require_credits
from tests.integrations.conftest import ACCOUNT, CHAT, CREDITS


def account_of(request: Request) -> str:
    return request.headers["x-account"]


@pytest.fixture
def app(wrapped_meter: Meter, account: str) -> Iterator[TestClient]:
    """``/chat`` holds 1,000 input and 500 output tokens (2,000 credits) and settles what
    its ``tokens`` parameter says, or the estimate; ``/fail`` raises; ``/more`` is refused
    a second hold inside the endpoint."""
    chat = require_credits(
        wrapped_meter,
        feature=CHAT,
        account=account_of,
        estimate={"input_tokens": 1000, "output_tokens": 500},
    )
    app = FastAPI()
    install(app)

    @app.post("/chat")
    def reply(call: Annotated[HeldRequest, Depends(chat)], tokens: int | None = None) -> str:
        if tokens is not None:
            call.settle(usage={"input_tokens": tokens, "output_tokens": tokens})
        return "hello"

    @app.post("/fail", dependencies=[Depends(chat)])
    def fail() -> None:
        raise RuntimeError("the model is down")

    @app.post("/more", dependencies=[Depends(chat)])
    def more(request: Request) -> None:
        wrapped_meter.authorize(account_of(request), CHAT, estimate={"output_tokens": CREDITS})

    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["x-account"] = account
        yield client


def test_an_endpoint_is_settled_after_it_runs(meter: CreditMeter, app: TestClient) -> None:
    assert app.post("/chat", params={"tokens": 100}).json() == "hello"
    assert meter.balance(ACCOUNT).available == CREDITS - 300
    assert app.post("/chat").status_code == 200
    assert meter.balance(ACCOUNT).available == CREDITS - 300 - 2000
    assert [r.credits for r in meter.usage(ACCOUNT).data] == [2000, 300]
    assert meter.pending_holds() == 0


def test_a_refusal_is_the_standard_402_before_the_endpoint_runs(
    meter: CreditMeter, app: TestClient
) -> None:
    meter.create_account("broke")
    answer = app.post("/chat", params={"tokens": 1}, headers={"x-account": "broke"})
    assert answer.status_code == 402
    error = answer.json()["error"]
    assert (error["type"], error["required"], error["available"]) == (
        "insufficient_credits",
        2000,
        0,
    )
    assert not meter.usage("broke").data
    assert meter.pending_holds() == 0


def test_an_endpoint_that_raises_releases_its_hold(meter: CreditMeter, app: TestClient) -> None:
    assert app.post("/fail").status_code == 500
    balance = meter.balance(ACCOUNT)
    assert (balance.available, balance.held) == (CREDITS, 0)
    assert not meter.usage(ACCOUNT).data
    assert meter.pending_holds() == 0


def test_a_refusal_inside_the_endpoint_is_the_standard_402_too(
    meter: CreditMeter, app: TestClient
) -> None:
    answer = app.post("/more")
    assert answer.status_code == 402
    error = answer.json()["error"]
    assert (error["type"], error["required"]) == ("insufficient_credits", 2 * CREDITS)
    assert meter.balance(ACCOUNT).available == CREDITS
    assert meter.pending_holds() == 0
