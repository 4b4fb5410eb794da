"""Verify a Stripe webhook delivery on its raw bytes and return the event as a dict.

``verify(raw, header, secrets, tolerance_s)`` tries each configured secret (so a secret can be
rotated) with stripe-python's ``WebhookSignature.verify_header``, the check inside
``Webhook.construct_event``. The JSON is parsed here rather than by construct_event, whose
StripeObject building raises RecursionError or AttributeError on hostile (deeply nested, or
not-an-object) bodies that are validly signed. Every failure raises ``Rejected`` with a stable
code, answered as HTTP 400:

    missing_signature            no Stripe-Signature header
    malformed_signature          no t=<int>, or no v1 signature (a v0-only header, say)
    bad_signature                v1 signatures present, none matches any secret
    timestamp_outside_tolerance  a matching signature, but older than the tolerance
    not_an_event                 a valid signature over something that is not a Stripe event
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import stripe

from tollway.errors import InvalidInput


class Rejected(InvalidInput):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _parse_header(header: str) -> None:
    parts = [p.split("=", 1) for p in header.split(",")]
    pairs = {(p[0].strip(), len(p)) for p in parts}
    t = [p[1] for p in parts if len(p) == 2 and p[0].strip() == "t"]
    if len(t) != 1 or not t[0].strip().isdigit():
        raise Rejected("malformed_signature", "Stripe-Signature has no t=<timestamp>")
    if ("v1", 2) not in pairs:
        raise Rejected("malformed_signature", "Stripe-Signature has no v1 signature")


def verify(
    raw: bytes, header: str | None, secrets: Sequence[str], tolerance_s: int
) -> dict[str, Any]:
    if not header:
        raise Rejected("missing_signature", "the Stripe-Signature header is missing")
    if not secrets:
        raise Rejected("bad_signature", "no webhook secret is configured", status=500)
    _parse_header(header)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(
            "bad_signature", "the body is not UTF-8, so Stripe did not sign it"
        ) from None
    stale = False
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(raw, header, secret, tolerance=tolerance_s)
        except stripe.SignatureVerificationError as exc:
            # Stripe checks the timestamp only after a signature has matched.
            stale = stale or str(exc).startswith("Timestamp outside the tolerance zone")
            continue
        break
    else:
        if stale:
            raise Rejected("timestamp_outside_tolerance", f"signed more than {tolerance_s}s ago")
        raise Rejected("bad_signature", "no v1 signature matches a configured secret")
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):
        raise Rejected("not_an_event", "the body is not JSON") from None
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
    ):
        raise Rejected("not_an_event", "the body is not a Stripe event (needs id and type)")
    return event
