"""webhook/errors.py: each exception's status and code, per route, from the one table."""

from __future__ import annotations

import json

import pytest
import stripe

from webhook.checkout import ClaimGone
from webhook.errors import CheckoutIncomplete, NoPrice, Route, UnknownSession, answer
from webhook.events import MalformedEvent
from webhook.processor import UnknownTier
from webhook.signature import Rejected


def body(route: Route, exc: Exception) -> tuple[int, str, str, bool]:
    row, response = answer(route, exc)
    err = json.loads(response.body)["error"]
    return response.status, err["code"], err["message"], row.refused


@pytest.mark.parametrize(
    ("route", "exc", "status", "code", "refused"),
    [
        (Route.EVENT, Rejected("bad_signature", "no match"), 400, "bad_signature", True),
        (Route.EVENT, MalformedEvent("no data"), 400, "malformed_event", True),
        (Route.EVENT, UnknownTier("price_x"), 503, "unknown_price", False),
        (Route.EVENT, ConnectionError("redis"), 503, "apply_failed", False),
        (Route.CHECKOUT, NoPrice("no price"), 502, "unknown_price", False),
        (Route.CHECKOUT, stripe.InvalidRequestError("bad", "x"), 502, "stripe_error", False),
        (Route.CLAIM, ClaimGone("already_claimed"), 410, "already_claimed", True),
        (Route.CLAIM, UnknownSession("cs_1"), 404, "unknown_session", True),
        (Route.CLAIM, CheckoutIncomplete("open"), 409, "checkout_incomplete", True),
        (Route.CLAIM, MalformedEvent("odd"), 502, "stripe_session_unusable", False),
        (Route.CLAIM, UnknownTier("price_x"), 502, "stripe_session_unusable", False),
        (Route.CLAIM, KeyError("bug"), 500, "internal_error", False),
    ],
)
def test_each_exception_gets_its_routes_answer(route, exc, status, code, refused):
    """The same exception answers by its route's row; anything unlisted falls to the last."""
    assert body(route, exc)[:2] == (status, code)
    assert body(route, exc)[3] is refused


def test_an_apply_failure_names_the_exception_but_not_its_text():
    """A 503 on a webhook says which kind of failure happened, never internal details."""
    assert body(Route.EVENT, ConnectionError("secret host"))[2] == (
        "ConnectionError: could not apply; retry"
    )


async def test_an_intent_without_a_branch_is_refused_not_dispatched_elsewhere(monkeypatch):
    """If the parser yields an intent the processor has no branch for, handle() raises
    (a 503, Stripe retries) instead of falling through to another intent's action."""
    from dataclasses import dataclass

    import webhook.processor as processor_module
    from webhook.events import Event
    from webhook.processor import Processor

    @dataclass(frozen=True)
    class RefundCreated(Event):
        customer: str = "cus_1"

    monkeypatch.setattr(processor_module, "parse", lambda e: RefundCreated("evt_1", 0))
    revoked: list[str] = []

    class Redis:
        def register_script(self, source: str) -> None:
            return None

    class Keys:
        redis = Redis()
        audit = None

        async def owned(self, owner: str) -> list[str]:
            revoked.append(owner)
            return []

    proc = Processor(Keys(), None, None, None, lambda: None, 0)  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        await proc.handle({"type": "refund.created"})
    assert revoked == []
