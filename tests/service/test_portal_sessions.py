"""Portal sessions through the library: a link opens once, before it expires."""

from __future__ import annotations

from datetime import timedelta

import pytest

from creditmeter import CreditMeter
from creditmeter.core.errors import InvalidRequest, NotFound
from tests.conftest import Clock


def test_a_link_opens_once(meter: CreditMeter, clock: Clock) -> None:
    meter.create_account("acme")
    made, token = meter.create_portal_session("acme", return_url="https://app.example/")
    assert made.expires_at == clock.now + timedelta(minutes=5)
    opened = meter.open_portal_session(token)
    assert opened is not None
    assert (opened.id, opened.account_id, opened.return_url) == (
        made.id,
        "acme",
        "https://app.example/",
    )
    assert meter.open_portal_session(token) is None
    assert meter.open_portal_session("not-a-token") is None


def test_a_link_expires_at_its_lifetime(meter: CreditMeter, clock: Clock) -> None:
    meter.create_account("acme")
    _, token = meter.create_portal_session("acme", lifetime=timedelta(minutes=1))
    clock.advance(seconds=60)
    assert meter.open_portal_session(token) is None


def test_a_link_needs_an_account_and_an_http_return_address(meter: CreditMeter) -> None:
    with pytest.raises(NotFound):
        meter.create_portal_session("nobody")
    meter.create_account("acme")
    with pytest.raises(InvalidRequest):
        meter.create_portal_session("acme", return_url="javascript:alert(1)")
    with pytest.raises(InvalidRequest, match="at most 2000"):
        meter.create_portal_session("acme", return_url="https://app.example/" + "x" * 2000)
    assert [e.action for e in meter.audit_log(limit=10).data] == ["account.created"]
