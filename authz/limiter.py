"""The one Redis round trip per check: run check.lua under a timeout and a circuit breaker.

Two failures, told apart on purpose:

    Exception
    ├── StoreUnavailable   Redis is broken: a socket timeout or connection error from redis-py,
    │                      an error reply, an unparseable reply, or the breaker is open. Feeds
    │                      the breaker; the tier's on_store_error policy answers.
    └── Overloaded         this process ran out of its check deadline (queueing for the event
                           loop or a pool connection). Redis is not blamed: 503 overloaded.

A timeout around the whole call cannot tell the two apart: under load, replies from a healthy
Redis wait unread behind other work, and cancelling them drops their connections.
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


class Overloaded(Exception):
    """The check did not finish within its deadline for reasons of our own load."""


class Limiter:
    def __init__(
        self,
        redis: Any,
        clock: CheckClock,
        breaker: Breaker,
        deadline_s: float,
        usage_window_s: int,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.breaker = breaker
        self.deadline_s = deadline_s
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
            async with asyncio.timeout(self.deadline_s):
                reply = await self._script(keys=schema.check_keys(key_id), args=[*args, *tier_args])
            outcome = Outcome.from_reply(reply)
        except TimeoutError as exc:  # builtin: our deadline (redis-py raises its own TimeoutError)
            if self.breaker.probing:
                self.breaker.failure()  # a probe must resolve, or the breaker stays half-open
            raise Overloaded(f"check took over {self.deadline_s * 1000:.0f} ms") from exc
        except (RedisError, OSError, ValueError) as exc:
            self.breaker.failure()
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self.breaker.success()
        return outcome
