"""Where webhooks may go: public addresses only, unless private ones are allowed; every
class of address that is not public is refused, IPv4 and IPv6 alike."""

from __future__ import annotations

import ipaddress

import pytest

from creditmeter.core import webhooks
from creditmeter.core.errors import InvalidRequest

REFUSED = [
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fd00::1", "private"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "non-public"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:0.0.0.0", "unspecified"),
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_an_address_that_is_not_public_is_refused_with_its_class(address: str, why: str) -> None:
    assert webhooks.refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_a_public_address_is_allowed(address: str) -> None:
    assert webhooks.refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/hooks", "loopback"),
        ("http://[::1]/hooks", "loopback"),
        ("http://[::ffff:7f00:1]/hooks", "loopback"),
        ("http://localhost/hooks", "loopback"),
        ("http://LOCALHOST./hooks", "loopback"),
        ("http://api.localhost/hooks", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.0.0.7/hooks", "private"),
        ("http://[fe80::1%25eth0]/hooks", "link-local"),
        ("http://0.0.0.0/hooks", "unspecified"),
    ],
)
def test_a_url_naming_a_private_host_is_refused_unless_allowed(url: str, why: str) -> None:
    with pytest.raises(InvalidRequest, match=f"a {why} address"):
        webhooks.url(url)
    assert webhooks.url(url, allow_private=True) == url


def test_a_url_naming_a_host_is_left_to_the_check_at_delivery() -> None:
    assert webhooks.url("https://hooks.example.com/in") == "https://hooks.example.com/in"
    assert webhooks.literal_refusal("127.1") is None, "not an address as written"


def test_a_url_with_a_bad_port_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        webhooks.url("http://example.com:99999/hooks")
