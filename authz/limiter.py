"""The one Redis round trip per check: run check.lua under a timeout and a circuit breaker.

Exceptions: ``StoreUnavailable`` wraps every way the store can fail (timeout, connection
error, Redis error reply, open breaker, unparseable reply), so the servicer maps one type to
the tier's ``on_store_error`` policy.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import RedisError

from authz.breaker import Breaker
from authz.outcome import Outcome
from tollway import schema, scripts
from tollway.clock import CheckClock
from tollway.records import DEFAULT_PERIOD_S


class StoreUnavailable(Exception):
    """The store could not give an answer for this check."""


class Limiter:
    def __init__(
        self,
        redis: Any,
        clock: CheckClock,
        breaker: Breaker,
        timeout_s: float,
        usage_window_s: int,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.breaker = breaker
        self.timeout_s = timeout_s
        self._window = str(usage_window_s)
        self._period = str(DEFAULT_PERIOD_S)
        self._script = scripts.register(redis, "check")

    async def check(
        self, key_id: str, digest: str, cost: int, tier_args: tuple[str, ...]
    ) -> Outcome:
        if not self.breaker.allow():
            raise StoreUnavailable("circuit breaker open")
        now = self.clock.now_ms()
        args = [digest, "" if now is None else str(now), str(cost), self._window, self._period]
        try:
            async with asyncio.timeout(self.timeout_s):
                reply = await self._script(keys=schema.check_keys(key_id), args=[*args, *tier_args])
            outcome = Outcome.from_reply(reply)
        except (RedisError, OSError, TimeoutError, ValueError) as exc:
            self.breaker.failure()
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self.breaker.success()
        return outcome
