"""Manage billing: a Stripe Customer Portal session (``billing_portal.Session``) for the
signed-in customer, who is the only customer it can name. Stripe (or the stand-in) hosts the
pages to update the card, switch plans or cancel; what changes comes back as webhooks."""

from __future__ import annotations

from typing import Any

from tollway.errors import Unavailable


class BillingUnavailable(Unavailable):
    """Stripe is not configured, or did not answer: the customer is told to retry later."""


class BillingPortal:
    def __init__(self, stripe: Any | None) -> None:
        self.stripe = stripe

    async def open(self, customer: str, return_url: str) -> str:
        """The URL of a new Customer Portal session for ``customer``."""
        if self.stripe is None:
            raise BillingUnavailable("Stripe is not configured")
        try:
            session = await self.stripe.v1.billing_portal.sessions.create_async(
                {"customer": customer, "return_url": return_url}
            )
        except Exception as exc:  # stripe.StripeError, or the network: never a 500
            raise BillingUnavailable(str(exc)) from exc
        return str(session.url)
