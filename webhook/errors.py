"""Every exception the webhook service answers, mapped to a response in one place.

    Exception
    ├── Rejected (signature.py)        a delivery refused before parsing: its own 4xx and code
    ├── MalformedEvent, UnknownStatus  the payload is wrong
    ├── UnknownTier                    no tier lists the subscription's price
    ├── ClaimGone                      the key was handed out already, or its window passed
    ├── UnknownSession                 no such checkout session (a LookupError)
    ├── CheckoutIncomplete             the session is not complete and paid
    ├── NoPrice                        a tier's lookup key matches no active Stripe price
    ├── InvalidInput, NotFound         /credits/checkout: no such account, pack or prepaid tier
    ├── stripe.StripeError             Stripe refused or could not be reached
    └── anything else                  Redis or a bug

The same exception can mean different things on different routes: a malformed event is the
sender's fault on ``/webhooks/stripe`` (400, never retried), but Stripe's on ``/keys/claim``
(502). So each route has its own table; ``answer(route, exc)`` picks the first row that
matches. A webhook failure that is not the payload's fault is a 503, so that Stripe retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import stripe
from aiohttp import web

from tollway.errors import InvalidInput, NotFound, Refused, error_body
from webhook.checkout import ClaimGone
from webhook.events import MalformedEvent
from webhook.processor import UnknownTier
from webhook.signature import Rejected
from webhook.subscriptions import UnknownStatus


class UnknownSession(NotFound):
    """No key was issued for the session, and Stripe does not know it either."""


class CheckoutIncomplete(Refused):
    """The checkout session is not complete and paid."""


class NoPrice(NotFound):
    """A tier's lookup key matches no active Stripe price."""


class Route(StrEnum):
    EVENT = "event"  # POST /webhooks/stripe
    CHECKOUT = "checkout"  # POST /checkout
    CLAIM = "claim"  # GET /keys/claim


@dataclass(frozen=True)
class Answer:
    status: int
    code: str
    message: str  # "" means the exception's own text; {type} is the exception's class name
    refused: bool  # True: the input's fault (counted as rejected); False: ours (failed)


TABLES: dict[Route, tuple[tuple[type[Exception] | tuple[type[Exception], ...], Answer], ...]] = {
    Route.EVENT: (
        ((MalformedEvent, UnknownStatus), Answer(400, "malformed_event", "", True)),
        (UnknownTier, Answer(503, "unknown_price", "", False)),
        (Exception, Answer(503, "apply_failed", "{type}: could not apply; retry", False)),
    ),
    Route.CHECKOUT: (
        (InvalidInput, Answer(400, "invalid_request", "", True)),
        (NoPrice, Answer(502, "unknown_price", "", False)),  # a NotFound: before it
        (NotFound, Answer(404, "not_found", "", True)),
        (stripe.StripeError, Answer(502, "stripe_error", "", False)),
        (
            Exception,
            Answer(500, "internal_error", "something went wrong on our side; retry", False),
        ),
    ),
    Route.CLAIM: (
        (
            ClaimGone,
            Answer(410, "", "this key was handed out already, or its claim window passed", True),
        ),
        (UnknownSession, Answer(404, "unknown_session", "", True)),
        (CheckoutIncomplete, Answer(409, "checkout_incomplete", "", True)),
        (
            (MalformedEvent, UnknownTier, UnknownStatus),
            Answer(502, "stripe_session_unusable", "", False),
        ),
        (stripe.StripeError, Answer(502, "stripe_error", "", False)),
        (
            Exception,
            Answer(500, "internal_error", "something went wrong on our side; retry", False),
        ),
    ),
}


def error(status: int, code: str, message: str) -> web.Response:
    """The one error body: ``{"error": {"code", "message"}}``."""
    return web.Response(
        text=error_body(code, message), status=status, content_type="application/json"
    )


def answer(route: Route, exc: Exception) -> tuple[Answer, web.Response]:
    """The row for ``exc`` on ``route``, and the response it makes."""
    if isinstance(exc, Rejected):
        row = Answer(exc.status, exc.code, exc.message, True)
        return row, error(row.status, row.code, row.message)
    row = next(a for kinds, a in TABLES[route] if isinstance(exc, kinds))
    code = row.code or getattr(exc, "code", "")
    if isinstance(exc, stripe.StripeError):
        message = exc.user_message or str(exc)
    else:
        message = row.message.format(type=type(exc).__name__) if row.message else str(exc)
    return row, error(row.status, code, message)
