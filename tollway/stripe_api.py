"""The one place tollway talks to Stripe from: a configured StripeClient, API version pinned.

With ``TOLLWAY_STRIPE_API_BASE`` set (tests, ``make run``) the real stripe SDK talks to the
local stand-in; with only ``STRIPE_API_KEY`` set, to real Stripe.
"""

from __future__ import annotations

import logging

import stripe

from tollway.errors import Unavailable
from tollway.logs import fields
from tollway.settings import StripeSettings

# Pinned so that payload shapes do not change under us; the webhook parser also accepts the
# pre-basil shapes (invoice.subscription, subscription.current_period_*).
API_VERSION = "2026-10-28.endive"
STANDIN_KEY = "sk_test_tollway_standin"


class StripeNotConfigured(Unavailable):
    """Neither STRIPE_API_KEY nor TOLLWAY_STRIPE_API_BASE is set."""


class Stripe:
    """A StripeClient (``.v1``) together with the HTTP client it owns, so it can be closed."""

    def __init__(self, settings: StripeSettings, max_network_retries: int = 2) -> None:
        if not settings.stripe_api_key and not settings.stripe_api_base:
            raise StripeNotConfigured(
                "set STRIPE_API_KEY (or TOLLWAY_STRIPE_API_BASE for the stand-in)"
            )
        # The stand-in serves the v2 meter event stream too (Stripe's is meter-events.stripe.com).
        base = (
            {"api": settings.stripe_api_base, "meter_events": settings.stripe_api_base}
            if settings.stripe_api_base
            else None
        )
        self._http = stripe.AIOHTTPClient()
        self.client = stripe.StripeClient(
            settings.stripe_api_key or STANDIN_KEY,
            base_addresses=base,  # type: ignore[arg-type]
            stripe_version=API_VERSION,
            http_client=self._http,
            max_network_retries=max_network_retries,
        )
        self.v1 = self.client.v1
        self.v2 = self.client.v2

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]


def optional(settings: StripeSettings, log: logging.Logger, effect: str) -> Stripe | None:
    """A Stripe client, or None (logged with what the service then cannot do) when Stripe is
    not configured."""
    try:
        return Stripe(settings)
    except StripeNotConfigured:
        log.warning("stripe_not_configured", extra=fields(effect=effect))
        return None
