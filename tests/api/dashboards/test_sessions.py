"""Signed session values and the CSRF tokens bound to them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from creditmeter.api.dashboards import sessions

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
SECRET = "a-secret"


def test_a_sealed_value_opens_with_its_secret_and_kind_until_it_expires() -> None:
    value = sessions.seal(SECRET, "portal", "acme", NOW + timedelta(hours=1), {"a": "b"})
    opened = sessions.unseal(SECRET, "portal", value, NOW)
    assert opened is not None
    assert (opened.subject, opened.extra) == ("acme", {"a": "b"})
    assert sessions.unseal("another-secret", "portal", value, NOW) is None
    assert sessions.unseal(SECRET, "admin", value, NOW) is None
    assert sessions.unseal(SECRET, "portal", value, NOW + timedelta(hours=1)) is None
    assert sessions.unseal(SECRET, "portal", value + "x", NOW) is None
    assert sessions.unseal(SECRET, "portal", "not.a.value", NOW) is None
    assert sessions.unseal(SECRET, "portal", None, NOW) is None


def test_a_csrf_token_holds_for_its_session_only() -> None:
    one = sessions.unseal(
        SECRET, "admin", sessions.seal(SECRET, "admin", "key_1", NOW + timedelta(hours=1)), NOW
    )
    two = sessions.unseal(
        SECRET, "admin", sessions.seal(SECRET, "admin", "key_1", NOW + timedelta(hours=1)), NOW
    )
    assert one is not None
    assert two is not None
    token = sessions.csrf_token(SECRET, one)
    assert sessions.csrf_holds(SECRET, one, token)
    assert not sessions.csrf_holds(SECRET, two, token)
    assert not sessions.csrf_holds(SECRET, one, None)
    assert not sessions.csrf_holds(SECRET, one, "")
