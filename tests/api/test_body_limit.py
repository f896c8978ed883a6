"""Body limits over HTTP, against a real ``creditmeter serve``: what is refused is
refused before the rest of the body is sent, so these requests never send it."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest

from creditmeter.api.body_limit import DEFAULT_MAX_BATCH_BODY_BYTES, DEFAULT_MAX_BODY_BYTES
from creditmeter.api.config import ServerSettings
from tests.client.conftest import ADMIN_KEY, Server, module_database_url, start_server
from tests.conftest import ENGINES

__all__ = ["module_database_url"]

LIMIT = 1_000
BATCH_LIMIT = 5_000
ANSWER_SECONDS = 20.0
"""How long a test waits for an answer it expects at once: without the limits, the
server waits for the body, which never comes, and the test fails at this timeout."""
AUTH = f"Authorization: Bearer {ADMIN_KEY}\r\n"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "module_database_url" in metafunc.fixturenames:
        metafunc.parametrize("module_database_url", ENGINES, indirect=True, scope="module")


@pytest.fixture(scope="module")
def server(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    served = start_server(
        module_database_url,
        tmp_path_factory.mktemp("log") / "serve.log",
        "--payments",
        "dev",  # a provider whose webhook checks signatures
        env={
            "CREDITMETER_MAX_BODY_BYTES": str(LIMIT),
            "CREDITMETER_MAX_BATCH_BODY_BYTES": str(BATCH_LIMIT),
        },
    )
    try:
        yield served
    finally:
        served.stop()


def answer(server: Server, head: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Sends ``head`` (and ``body``, which may be only the start of what ``head``
    announces) and reads the answer without sending more."""
    address = urlsplit(server.url)
    assert address.hostname is not None
    assert address.port is not None
    with socket.create_connection((address.hostname, address.port), ANSWER_SECONDS) as sock:
        sock.sendall(f"{head}Host: {address.netloc}\r\n\r\n".encode() + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def test_a_declared_length_over_the_limit_is_413_before_the_body(server: Server) -> None:
    status, body = answer(
        server, f"POST /v1/usage HTTP/1.1\r\n{AUTH}Content-Length: {200 << 20}\r\n"
    )
    assert status == 413
    assert body["error"]["type"] == "payload_too_large"
    assert str(LIMIT) in body["error"]["message"]


def test_a_chunked_body_is_413_once_it_passes_the_limit(server: Server) -> None:
    chunk = b"x" * 600
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2))
    status, body = answer(
        server,
        f"POST /v1/usage HTTP/1.1\r\n{AUTH}Transfer-Encoding: chunked\r\n"
        "Content-Type: application/json\r\n",
        chunks,  # 1,200 bytes and no last chunk: the body has not ended
    )
    assert status == 413
    assert body["error"]["type"] == "payload_too_large"


@pytest.mark.parametrize("authorization", ["", "Authorization: Bearer cm_not_a_key\r\n"])
def test_a_body_without_a_valid_key_is_401_before_it_is_read(
    server: Server, authorization: str
) -> None:
    status, body = answer(
        server,
        f"POST /v1/accounts HTTP/1.1\r\n{authorization}Content-Length: 500\r\n"
        "Content-Type: application/json\r\n",
    )
    assert status == 401
    assert body["error"]["type"] == "unauthenticated"


def test_the_batch_takes_the_larger_limit_and_small_bodies_pass(server: Server) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    padding = {"note": "x" * 2_000}
    account = httpx2.post(
        f"{server.url}/v1/accounts", json={"id": "acme", "metadata": padding}, headers=headers
    )
    event = {"account": "acme", "feature": "chat", "credits": 1, "metadata": padding}
    alone = httpx2.post(f"{server.url}/v1/usage", json=event, headers=headers)
    events = [{**event, "idempotency_key": f"e{i}"} for i in range(2)]
    batch = httpx2.post(f"{server.url}/v1/usage/batch", json={"events": events}, headers=headers)
    webhook = httpx2.post(f"{server.url}/v1/webhooks/stripe", content=b"{}")

    assert account.status_code == 413
    assert alone.status_code == 413
    assert batch.status_code == 200, batch.text
    assert webhook.status_code == 400  # no key needed: its signature is checked instead


def test_the_default_limits() -> None:
    settings = ServerSettings()
    assert settings.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 1 << 20
    assert settings.max_batch_body_bytes == DEFAULT_MAX_BATCH_BODY_BYTES == 16 << 20
