"""Webhook signature verification on raw bytes, every failure with its own code."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from webhook.signature import Rejected, verify

SECRET = "whsec_test_secret"
EVENT = {
    "id": "evt_1",
    "object": "event",
    "type": "invoice.paid",
    "created": 1,
    "data": {"object": {}},
}
RAW = json.dumps(EVENT, separators=(",", ":")).encode()


def sign(raw: bytes, secret: str = SECRET, t: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(raw.decode(), secret, t)


def code_of(raw: bytes, header: str | None, secrets=(SECRET,), tolerance: int = 300) -> str:
    with pytest.raises(Rejected) as err:
        verify(raw, header, list(secrets), tolerance)
    return err.value.code


def test_valid_signature_returns_the_event():
    """A correctly signed event is returned as a dict."""
    assert verify(RAW, sign(RAW), [SECRET], 300) == EVENT


def test_missing_header():
    """No Stripe-Signature header: missing_signature."""
    assert code_of(RAW, None) == "missing_signature"
    assert code_of(RAW, "") == "missing_signature"


@pytest.mark.parametrize("header", ["garbage", "t=abc,v1=00", "v1=00", "t=1,t=2,v1=00"])
def test_malformed_header(header):
    """An unparseable header: malformed_signature."""
    assert code_of(RAW, header) == "malformed_signature"


def test_only_a_v0_signature_is_refused():
    """A header with only a v0 (test-mode legacy) signature carries no v1 to check."""
    t = int(time.time())
    v1 = sign(RAW, t=t).split("v1=")[1]
    assert code_of(RAW, f"t={t},v0={v1}") == "malformed_signature"


def test_one_bad_and_one_good_v1_signature_is_accepted():
    """Several v1 signatures are allowed; one matching is enough (as during Stripe's rotation)."""
    t = int(time.time())
    good = sign(RAW, t=t).split("v1=")[1]
    assert verify(RAW, f"t={t},v1={'0' * 64},v1={good}", [SECRET], 300)["id"] == "evt_1"


def test_wrong_secret_is_bad_signature():
    """Signed with another secret: bad_signature."""
    assert code_of(RAW, sign(RAW, "whsec_other")) == "bad_signature"


def test_rotated_secrets_are_all_tried():
    """With two configured secrets, a delivery signed with either is accepted."""
    assert verify(RAW, sign(RAW, "whsec_new"), [SECRET, "whsec_new"], 300)["id"] == "evt_1"


def test_stale_timestamp_is_outside_tolerance():
    """A matching signature older than the tolerance: timestamp_outside_tolerance."""
    old = int(time.time()) - 301
    assert code_of(RAW, sign(RAW, t=old)) == "timestamp_outside_tolerance"
    assert verify(RAW, sign(RAW, t=old), [SECRET], 600)["id"] == "evt_1"


def test_reserialized_json_fails():
    """The signature covers the raw bytes: the same JSON re-serialized does not verify."""
    header = sign(RAW)
    reserialized = json.dumps(json.loads(RAW), indent=2).encode()
    assert code_of(reserialized, header) == "bad_signature"


def test_non_utf8_body_is_refused_cleanly():
    """Bytes that are not UTF-8 are refused without an exception escaping."""
    raw = b"\xff\xfe\x00garbage"
    assert code_of(raw, f"t={int(time.time())},v1={'0' * 64}") == "bad_signature"


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b'{"id": 5}', b"[" * 100000 + b"]" * 100000]
)
def test_signed_non_events_are_not_an_event(body):
    """A valid signature over something that is not a Stripe event: not_an_event, no crash."""
    assert code_of(body, sign(body)) == "not_an_event"
