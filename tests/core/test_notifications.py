"""Notification preferences: which channels an event goes on, and what an address is."""

from __future__ import annotations

import pytest

from creditmeter.core.errors import InvalidRequest
from creditmeter.core.notifications import NotificationPreferences, channels, emails

TYPES = frozenset({"purchase.fulfilled", "purchase.failed"})


def test_without_preferences_every_event_goes_on_every_channel() -> None:
    defaults = NotificationPreferences("acme")
    assert defaults.wants("purchase.failed", "email")
    assert defaults.wants("anything.else", "webhook")
    assert defaults.emails == ()


def test_a_line_of_its_own_wins_over_the_star_which_is_both_unless_given() -> None:
    chosen = channels({"purchase.failed": ["webhook"], "purchase.fulfilled": []}, TYPES)
    prefs = NotificationPreferences("acme", channels=chosen)
    assert prefs.wants("purchase.failed", "webhook")
    assert not prefs.wants("purchase.failed", "email")
    assert not prefs.wants("purchase.fulfilled", "webhook")
    assert prefs.wants("grant.created", "email"), "the star: both"
    quiet = NotificationPreferences("acme", channels=channels({"*": []}, TYPES))
    assert not quiet.wants("purchase.failed", "email")


@pytest.mark.parametrize(
    "value",
    [{"nope": ["email"]}, {"*": ["sms"]}, {"*": "email"}, ["email"], {"*": [1]}],
)
def test_bad_channels_are_refused(value: object) -> None:
    with pytest.raises(InvalidRequest):
        channels(value, TYPES)


def test_addresses_are_kept_in_order_once_each() -> None:
    assert emails(["b@x.example", "a@x.example", "b@x.example"]) == ("b@x.example", "a@x.example")


@pytest.mark.parametrize(
    "value",
    [["x"], ["a@b"], ["a b@c.example"], ["a@b.example\n"], ["a\x00@b.example"], "a@b.example"],
)
def test_what_is_not_an_address_is_refused(value: object) -> None:
    with pytest.raises(InvalidRequest):
        emails(value)
