"""The one tree of errors tollway raises on purpose, and the one JSON error body.

    Exception
    └── TollwayError                every error tollway raises on purpose
        ├── InvalidInput (ValueError)   what a caller sent or configured cannot be used. Its
        │   │                           message says why, and is safe to show that caller
        │   │                           (a customer, an operator, Stripe): SettingsError,
        │   │                           TierError, RouteConfigError, MalformedEvent,
        │   │                           UnknownStatus, Rejected (a webhook signature),
        │   │                           BadRequest (authz's HTTP front)
        │   └── LifecycleError          a change the key's or account's state refuses
        ├── NotFound (LookupError)      no such thing: KeyNotFound, UnknownSession, NoPrice,
        │                               UnknownTier
        ├── Unavailable                 a dependency cannot answer now: StoreUnavailable,
        │                               Overloaded, BillingUnavailable, StripeNotConfigured
        └── Refused                     a request that is well formed but not allowed:
                                        NotYours, ClaimGone, CheckoutIncomplete, CliError

An error that is not a TollwayError is a bug or a dependency's: its text is logged, never shown
to a customer. Each service maps errors to answers in one place (webhook/errors.py,
portal/app.py's handlers, authz's decision); ``error_body`` is the JSON they all answer with.
"""

from __future__ import annotations

import json


class TollwayError(Exception):
    """An error tollway raises on purpose."""


class InvalidInput(TollwayError, ValueError):
    """What a caller sent or configured cannot be used; the message says why, and ``field``
    names the request field at fault when one is (the management API answers it)."""

    def __init__(self, message: str = "", field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LifecycleError(InvalidInput):
    """A change the key's or account's state refuses; the message says why and what to do."""


class NotFound(TollwayError, LookupError):
    """No such thing."""


class Unavailable(TollwayError):
    """A dependency (Redis, Stripe) cannot answer now; retrying later may work."""


class Refused(TollwayError):
    """A well-formed request that is not allowed."""


def error_body(code: str, message: str) -> str:
    """``{"error": {"code", "message"}}``, the body of every error tollway answers over HTTP
    (authz's denials, the webhook service, the management API)."""
    return json.dumps({"error": {"code": code, "message": message}})
