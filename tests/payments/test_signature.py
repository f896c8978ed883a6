from __future__ import annotations

import time

import pytest
import stripe

from creditmeter.core.payments import InvalidSignature
from creditmeter.payments.signature import TOLERANCE_SECONDS, sign, verify

SECRET = "whsec_test_signature"
BODY = b'{"id": "evt_1", "type": "payment_intent.succeeded"}'
SIGNED_AT = 1_800_000_000


def mac_of(header: str) -> str:
    return header.partition(",v1=")[2]


def test_a_signature_verifies_under_its_secret() -> None:
    verify(BODY, sign(BODY, SECRET), SECRET)


def test_the_header_is_stripes() -> None:
    header = sign(BODY, SECRET, SIGNED_AT)

    assert header.startswith(f"t={SIGNED_AT},v1=")
    assert header == stripe.WebhookSignature.generate_signature_header(
        BODY.decode(), SECRET, SIGNED_AT
    )


def test_another_secret_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(BODY, sign(BODY, "whsec_other"), SECRET)


def test_a_tampered_body_is_refused() -> None:
    header = sign(BODY, SECRET)

    with pytest.raises(InvalidSignature, match="does not match"):
        verify(BODY.replace(b"evt_1", b"evt_2"), header, SECRET)


def test_a_changed_timestamp_is_refused() -> None:
    forged = f"t={SIGNED_AT + 1},v1={mac_of(sign(BODY, SECRET, SIGNED_AT))}"

    with pytest.raises(InvalidSignature, match="does not match"):
        verify(BODY, forged, SECRET, now=SIGNED_AT)


@pytest.mark.parametrize("offset", [-TOLERANCE_SECONDS, 0, TOLERANCE_SECONDS])
def test_a_timestamp_within_the_tolerance_verifies(offset: int) -> None:
    verify(BODY, sign(BODY, SECRET, SIGNED_AT), SECRET, now=SIGNED_AT + offset)


@pytest.mark.parametrize(
    "offset",
    [
        pytest.param(TOLERANCE_SECONDS + 1, id="stale"),
        pytest.param(-TOLERANCE_SECONDS - 1, id="future"),
    ],
)
def test_a_timestamp_past_the_tolerance_is_refused(offset: int) -> None:
    with pytest.raises(InvalidSignature, match="past 300 s"):
        verify(BODY, sign(BODY, SECRET, SIGNED_AT), SECRET, now=SIGNED_AT + offset)


def test_the_tolerance_can_be_narrowed() -> None:
    header = sign(BODY, SECRET, SIGNED_AT)

    verify(BODY, header, SECRET, tolerance=10, now=SIGNED_AT + 10)
    with pytest.raises(InvalidSignature):
        verify(BODY, header, SECRET, tolerance=10, now=SIGNED_AT + 11)


def test_the_clock_is_the_default_now() -> None:
    with pytest.raises(InvalidSignature, match="past"):
        verify(BODY, sign(BODY, SECRET, int(time.time()) - TOLERANCE_SECONDS - 5), SECRET)


def test_one_right_signature_among_several_verifies() -> None:
    right = mac_of(sign(BODY, SECRET, SIGNED_AT))
    wrong = mac_of(sign(BODY, "whsec_rolled", SIGNED_AT))

    verify(BODY, f"t={SIGNED_AT},v1={wrong},v1={right}", SECRET, now=SIGNED_AT)
    verify(BODY, f"t={SIGNED_AT}, v1={right}, v0=ignored, v1={wrong}", SECRET, now=SIGNED_AT)


def test_several_wrong_signatures_are_refused() -> None:
    wrong = mac_of(sign(BODY, "whsec_rolled", SIGNED_AT))

    with pytest.raises(InvalidSignature, match="does not match"):
        verify(BODY, f"t={SIGNED_AT},v1={wrong},v1={wrong[::-1]}", SECRET, now=SIGNED_AT)


@pytest.mark.parametrize("header", [None, ""])
def test_a_missing_header_is_refused(header: str | None) -> None:
    with pytest.raises(InvalidSignature, match="missing"):
        verify(BODY, header, SECRET)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("garbage", id="no fields"),
        pytest.param(f"t={SIGNED_AT}", id="no signature"),
        pytest.param("v1={mac}", id="no timestamp"),
        pytest.param("t=soon,v1={mac}", id="timestamp not a number"),
        pytest.param("t=-5,v1={mac}", id="negative timestamp"),
        pytest.param(f"t={SIGNED_AT},v0={{mac}}", id="only another scheme"),
        pytest.param(f"t={SIGNED_AT},v1=", id="empty signature"),
    ],
)
def test_a_malformed_header_is_refused(header: str) -> None:
    header = header.format(mac=mac_of(sign(BODY, SECRET, SIGNED_AT)))

    with pytest.raises(InvalidSignature):
        verify(BODY, header, SECRET, now=SIGNED_AT)
