"""Trying a Stripe call until it succeeds, is refused for good, or runs out of attempts.

Stripe's advice for meter events: retry 429, 5xx and lost connections with exponential
backoff and jitter, honour Retry-After, and treat any other 4xx as final. Every attempt first
takes a token from a ``RateLimiter`` shared by the whole daemon, so the total stays under
Stripe's rate limit however many customers are sent at once.

Results (``SendResult``):
    ACCEPTED     Stripe took it
    DUPLICATE    Stripe already has this identifier: it was delivered before (counts as sent)
    DEAD         a 4xx refusal (unknown customer, bad value, too old): parked as a dead letter
    RETRY_LATER  429, 5xx, timeouts, connection errors, still failing after every attempt
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

import stripe


class SendResult(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    DEAD = "dead"
    RETRY_LATER = "retry_later"


class RateLimiter:
    """At most ``rate`` acquisitions a second (a token bucket of one second's worth)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.last = time.monotonic()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


def retryable(exc: stripe.StripeError) -> bool:
    """429, 5xx and no answer at all are worth another try; any other 4xx is final."""
    status = exc.http_status or 0
    transient = isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError)
    return transient or status == 429 or status >= 500 or status == 0


def _retry_after(exc: stripe.StripeError) -> float | None:
    raw = (exc.headers or {}).get("retry-after") or (exc.headers or {}).get("Retry-After")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


class Retrier:
    def __init__(
        self,
        limiter: RateLimiter,
        attempts: int,
        on_retry: Callable[[], None] = lambda: None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        base_delay_s: float = 0.2,
        max_delay_s: float = 10.0,
    ) -> None:
        self.limiter = limiter
        self.attempts = max(1, attempts)
        self.on_retry = on_retry
        self.sleep = sleep
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s

    def backoff(self, attempt: int) -> float:
        """Exponential, capped, with jitter so that daemons do not retry in step."""
        cap: float = min(self.max_delay_s, self.base_delay_s * 2.0**attempt)
        return cap * random.uniform(0.5, 1.0)  # noqa: S311

    async def attempt(
        self,
        call: Callable[[], Awaitable[Any]],
        classify: Callable[[stripe.StripeError], SendResult | None],
    ) -> tuple[SendResult, str]:
        """Run ``call`` until it succeeds (ACCEPTED), ``classify`` calls an error final, or the
        attempts run out (RETRY_LATER). Between attempts: Retry-After, or backoff."""
        reason = ""
        for attempt in range(self.attempts):
            if attempt:
                self.on_retry()
            await self.limiter.acquire()
            wait: float | None = None
            try:
                await call()
                return SendResult.ACCEPTED, ""
            except stripe.StripeError as exc:
                reason = f"{type(exc).__name__} {exc.http_status or 0}: {exc.user_message or exc}"
                final = classify(exc)
                if final is not None:
                    return final, reason
                wait = _retry_after(exc)
            except (TimeoutError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < self.attempts:
                await self.sleep(wait if wait is not None else self.backoff(attempt))
        return SendResult.RETRY_LATER, reason
