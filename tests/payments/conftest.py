"""A real localstripe server for the session, and a Stripe provider pointed at it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import stripe

from creditmeter.payments.stripe import StripeProvider

WEBHOOK_SECRET = "whsec_test_creditmeter"
STARTUP_SECONDS = 15


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_answering(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"localstripe exited with status {server.returncode}")
        try:
            httpx2.get(f"{url}/js.stripe.com/v3/", timeout=1).raise_for_status()
            return
        except httpx2.TransportError:
            time.sleep(0.1)
    pytest.fail(f"localstripe did not answer at {url} within {STARTUP_SECONDS} s")


@pytest.fixture(scope="session")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    localstripe = Path(sys.executable).parent / "localstripe"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("localstripe") / "server.log"
    with (
        log.open("wb") as output,
        subprocess.Popen(
            [localstripe, "--port", str(port), "--from-scratch"],
            stdout=output,
            stderr=subprocess.STDOUT,
        ) as server,
    ):
        try:
            wait_until_answering(url, server)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=10)


def register_webhook(localstripe_url: str, name: str, url: str, secret: str) -> None:
    response = httpx2.post(
        f"{localstripe_url}/_config/webhooks/{name}", data={"url": url, "secret": secret}
    )
    response.raise_for_status()


@pytest.fixture
def stripe_provider(localstripe_url: str) -> StripeProvider:
    return StripeProvider("sk_test_creditmeter", WEBHOOK_SECRET, api_base=localstripe_url)


@pytest.fixture
def stripe_client(localstripe_url: str) -> stripe.StripeClient:
    """The SDK itself, to read back what the provider made."""
    return stripe.StripeClient("sk_test_creditmeter", base_addresses={"api": localstripe_url})
