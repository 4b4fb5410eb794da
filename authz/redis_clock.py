"""What time it is on the Redis server, estimated from the times its check replies carry.

check.lua returns Redis's own TIME with every answer. The reply arrives a little after Redis
read its clock, so ``redis_now - local_now`` measured at arrival is never more than the true
offset; the largest such sample over a window is the best estimate (the least delayed reply).
The estimate only ever dates a deadline; a late estimate makes deadlines a little early, so
the error is on the side of voiding a check, not of counting one authz gave up on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

WINDOW_S = 10.0


class RedisClock:
    def __init__(
        self,
        now_ms: Callable[[], float] = lambda: time.time() * 1000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._now_ms = now_ms
        self._monotonic = monotonic
        self.offset_ms: float | None = None  # Redis time minus local time
        self._window_max = -math.inf
        self._window_end = 0.0

    def learn(self, redis_ms: int) -> None:
        sample = redis_ms - self._now_ms()
        self._window_max = max(self._window_max, sample)
        if self.offset_ms is None or sample > self.offset_ms:
            self.offset_ms = sample
        if self._monotonic() >= self._window_end:  # forget old samples: clocks drift
            self.offset_ms, self._window_max = self._window_max, -math.inf
            self._window_end = self._monotonic() + WINDOW_S

    def deadline(self, budget_ms: float) -> str:
        """ARGV for check.lua: Redis time ``budget_ms`` from now, or "" before any sample."""
        if self.offset_ms is None:
            return ""
        return str(int(self._now_ms() + self.offset_ms + budget_ms))
