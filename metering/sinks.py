"""Where pending usage goes: the ``Sink`` protocol, and Stripe's v1 Billing Meter Events.

The daemon hands a sink batches of at most ``batch_size`` pending events, ``concurrency``
batches at a time, and records the result of each event. Two sinks exist:
``MeterEventSink`` (here: one v1 meter event per request) and ``StreamSink`` (metering/
stream.py: Stripe's v2 meter event stream, 100 per request).

Two layers of idempotency, as Stripe recommends: the body's ``identifier`` (Stripe refuses a
repeat for at least 24 hours) and an ``Idempotency-Key`` derived from it (a network retry gets
Stripe's first answer replayed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import stripe

from metering.ledger import PendingEvent
from metering.retry import Retrier, SendResult, retryable

Sent = tuple[PendingEvent, SendResult, str]  # an event, what Stripe made of it, and why


class Sink(Protocol):
    batch_size: int  # events per send()
    concurrency: int  # send() calls the daemon may have out at once

    async def send(self, batch: Sequence[PendingEvent]) -> list[Sent]:
        """Deliver ``batch``; the result of every event in it, in order."""
        ...


def event_for(p: PendingEvent, window_s: int) -> dict[str, Any]:
    """The v1 meter event for ``p``: its value, stamped at the end of its usage window."""
    return {
        "event_name": p.meter,
        "identifier": p.identifier,
        "timestamp": p.window + window_s,
        "payload": {"stripe_customer_id": p.customer, "value": str(p.value)},
    }


def _is_duplicate(exc: stripe.StripeError) -> bool:
    message = str(exc.user_message or "")
    return exc.code == "duplicate_meter_event" or "already exists with identifier" in message


class MeterEventSink:
    """v1: one ``POST /v1/billing/meter_events`` per event, many customers at once (the
    Retrier's rate limiter keeps the total under Stripe's limit)."""

    batch_size = 1

    def __init__(self, stripe_client: Any, retrier: Retrier, window_s: int, concurrency: int = 64):
        self.stripe = stripe_client
        self.retrier = retrier
        self.window_s = window_s
        self.concurrency = concurrency

    async def send(self, batch: Sequence[PendingEvent]) -> list[Sent]:
        return [(p, *await self.send_one(p)) for p in batch]

    async def send_one(self, p: PendingEvent) -> tuple[SendResult, str]:
        params = event_for(p, self.window_s)
        options = {"idempotency_key": f"tw-ik-{p.identifier}"}

        def classify(exc: stripe.StripeError) -> SendResult | None:
            if _is_duplicate(exc):
                return SendResult.DUPLICATE
            return None if retryable(exc) else SendResult.DEAD

        return await self.retrier.attempt(
            lambda: self.stripe.v1.billing.meter_events.create_async(params, options), classify
        )
