"""``--mode stream``: send pending usage through Stripe's v2 meter event stream.

Up to 100 events per request, authenticated by a meter event session token that lasts 15
minutes and is renewed before it runs out. The identifier is the same deterministic one as in
v1 mode, so Stripe de-duplicates re-sends after a crash. A batch Stripe refuses with a 4xx is
sent again event by event through v1, so one bad event cannot hold back 99 good ones.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import stripe

from metering.ledger import Pending
from metering.sender import Outcome, Sender, retryable

BATCH = 100
RENEW_BEFORE_S = 60


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class StreamSender:
    """Batches for the v2 stream; retries, backoff and the rate limit are the v1 Sender's."""

    def __init__(self, v1: Sender, now: Callable[[], float] = time.time) -> None:
        self.v1 = v1
        self.now = now
        self._token = ""
        self._expires = 0.0
        self.sessions = 0  # sessions opened, for tests and the bench

    async def _session(self) -> str:
        if not self._token or self._expires - self.now() < RENEW_BEFORE_S:
            session = await self.v1.stripe.v2.billing.meter_event_session.create_async()
            self._token = session.authentication_token
            expires = datetime.fromisoformat(str(session.expires_at).replace("Z", "+00:00"))
            self._expires = expires.timestamp()
            self.sessions += 1
        return self._token

    def event(self, p: Pending) -> dict[str, Any]:
        return {
            "event_name": p.meter,
            "identifier": p.identifier,
            "timestamp": _iso(p.window + self.v1.window_s),
            "payload": {"stripe_customer_id": p.customer, "value": str(p.value)},
        }

    async def send_batch(self, batch: list[Pending]) -> list[tuple[Pending, Outcome, str]]:
        """Send up to 100 events; the outcome of each."""
        body = {"events": [self.event(p) for p in batch]}
        key = (
            "tw-ik-"
            + hashlib.sha256("|".join(p.identifier for p in batch).encode()).hexdigest()[:48]
        )

        async def call() -> None:
            token = await self._session()
            await self.v1.stripe.v2.billing.meter_event_stream.create_async(
                body, {"api_key": token, "idempotency_key": key}
            )

        def classify(exc: stripe.StripeError) -> Outcome | None:
            if exc.http_status == 401:
                self._token = ""  # the session ran out early: open a new one and retry
                return None
            return None if retryable(exc) else Outcome.DEAD

        outcome, reason = await self.v1.attempt(call, classify)
        if outcome is Outcome.DEAD:  # the batch was refused: find the bad event(s) one by one
            return [(p, *await self.v1.send(p)) for p in batch]
        return [(p, outcome, reason) for p in batch]
