"""``--mode stream``: send pending usage through Stripe's v2 meter event stream.

Up to 100 events per request, authenticated by a meter event session token that lasts 15
minutes and is renewed before it runs out. The identifier is the same deterministic one as in
v1 mode, so Stripe de-duplicates re-sends after a crash. A batch Stripe refuses with a 4xx is
sent again event by event through v1, so one bad event cannot hold back 99 good ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import stripe

from metering.ledger import Pending
from metering.sender import Outcome, RateLimiter, Sender

BATCH = 100
RENEW_BEFORE_S = 60


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class StreamSender:
    def __init__(
        self,
        stripe_client: Any,
        limiter: RateLimiter,
        window_s: int,
        attempts: int,
        fallback: Sender,
        on_retry: Callable[[], None] = lambda: None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.stripe = stripe_client
        self.limiter = limiter
        self.window_s = window_s
        self.attempts = max(1, attempts)
        self.fallback = fallback
        self.on_retry = on_retry
        self.sleep = sleep
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

    def event(self, p: Pending) -> dict[str, Any]:
        return {
            "event_name": p.meter,
            "identifier": p.identifier,
            "timestamp": _iso(p.window + self.window_s),
            "payload": {"stripe_customer_id": p.customer, "value": str(p.value)},
        }

    async def send_batch(self, batch: list[Pending]) -> list[tuple[Pending, Outcome, str]]:
        """Send up to 100 events; the outcome of each."""
        body = {"events": [self.event(p) for p in batch]}
        key = (
            "tw-ik-"
            + hashlib.sha256("|".join(p.identifier for p in batch).encode()).hexdigest()[:48]
        )
        reason = ""
        for attempt in range(self.attempts):
            if attempt:
                self.on_retry()
            await self.limiter.acquire()
            wait: float | None = None
            try:
                token = await self._session()
                await self.stripe.v2.billing.meter_event_stream.create_async(
                    body, {"api_key": token, "idempotency_key": key}
                )
                return [(p, Outcome.ACCEPTED, "") for p in batch]
            except stripe.StripeError as exc:
                status = exc.http_status or 0
                reason = f"{type(exc).__name__} {status}: {exc.user_message or exc}"
                if status == 401:
                    self._token = ""  # the session ran out early: open a new one
                elif 400 <= status < 500 and status != 429:
                    return [(p, *await self.fallback.send(p)) for p in batch]
                raw = (exc.headers or {}).get("retry-after")
                wait = float(raw) if raw and raw.replace(".", "", 1).isdigit() else None
            except (TimeoutError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < self.attempts:
                backoff = min(10.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311
                await self.sleep(wait if wait is not None else backoff)
        return [(p, Outcome.RETRY_LATER, reason) for p in batch]
