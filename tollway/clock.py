"""Clocks, injected wherever time matters so tests can pin it."""

from __future__ import annotations

import time
from typing import Protocol


class CheckClock(Protocol):
    def now_ms(self) -> int | None:
        """Milliseconds since the epoch, or None to let Redis use its own clock (TIME)."""


class Clock(Protocol):
    def now(self) -> int:
        """Seconds since the epoch."""


class RedisTime:
    """Production: the Redis server's clock, so every authz process agrees on bucket levels."""

    def now_ms(self) -> int | None:
        return None


class WallClock:
    """Production, outside the check path: this machine's clock, in whole seconds."""

    def now(self) -> int:
        return int(time.time())


class FixedClock:
    """Tests: a clock that moves only when told to."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms

    def now(self) -> int:
        return self.ms // 1000

    def advance(self, ms: int) -> None:
        self.ms += ms
