"""``TOLLWAY_METERING_SINK=stream``: pending usage through Stripe's v2 meter event stream.

Up to 100 events per request, authenticated by a meter event session token that lasts 15
minutes and is renewed before it runs out. The identifier is the same deterministic one as in
v1, so Stripe de-duplicates re-sends after a crash. A batch Stripe refuses with a 4xx is sent
again event by event through the ``fallback`` sink, so one bad event cannot hold back 99 good
ones. One batch is out at a time: the session token is shared, and 100 events a request is
already 100 times v1's rate.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import stripe

from metering.ledger import PendingEvent
from metering.retry import Retrier, SendResult, retryable
from metering.sinks import Sent, Sink, event_for

BATCH = 100
RENEW_BEFORE_S = 60


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class StreamSink:
    batch_size = BATCH
    concurrency = 1

    def __init__(
        self,
        stripe_client: Any,
        retrier: Retrier,
        window_s: int,
        fallback: Sink,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.stripe = stripe_client
        self.retrier = retrier
        self.window_s = window_s
        self.fallback = fallback
        self.now = now
        self._token = ""
        self._expires = 0.0
        self.sessions = 0  # sessions opened, for tests and the bench

    async def _session(self) -> str:
        if not self._token or self._expires - self.now() < RENEW_BEFORE_S:
            session = await self.stripe.v2.billing.meter_event_session.create_async()
            self._token = session.authentication_token
            expires = datetime.fromisoformat(str(session.expires_at).replace("Z", "+00:00"))
            self._expires = expires.timestamp()
            self.sessions += 1
        return self._token

    def event(self, p: PendingEvent) -> dict[str, Any]:
        """The v1 body (sinks.event_for), with the v2 stream's ISO 8601 timestamp."""
        body = event_for(p, self.window_s)
        body["timestamp"] = _iso(body["timestamp"])
        return body

    async def send(self, batch: Sequence[PendingEvent]) -> list[Sent]:
        """Send up to 100 events in one request; the result of each."""
        body = {"events": [self.event(p) for p in batch]}
        key = (
            "tw-ik-"
            + hashlib.sha256("|".join(p.identifier for p in batch).encode()).hexdigest()[:48]
        )

        async def call() -> None:
            token = await self._session()
            await self.stripe.v2.billing.meter_event_stream.create_async(
                body, {"api_key": token, "idempotency_key": key}
            )

        def classify(exc: stripe.StripeError) -> SendResult | None:
            if exc.http_status == 401:
                self._token = ""  # the session ran out early: open a new one and retry
                return None
            return None if retryable(exc) else SendResult.DEAD

        result, reason = await self.retrier.attempt(call, classify)
        if result is SendResult.DEAD:  # the batch was refused: find the bad event(s) one by one
            return await self.fallback.send(batch)
        return [(p, result, reason) for p in batch]
