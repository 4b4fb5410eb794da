"""A circuit breaker for the store, so a dead Redis costs one timeout, not one per request.

closed --(``threshold`` consecutive failures)--> open --(``cooldown_s``)--> half-open:
one probe call goes through; its success closes the breaker, its failure re-opens it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Breaker:
    def __init__(
        self, threshold: int, cooldown_s: float, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = max(1, threshold)
        self.cooldown_s = cooldown_s
        self._now = now
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    @property
    def probing(self) -> bool:
        return self._probing

    def allow(self) -> bool:
        """May a call go to the store now?"""
        if self._open_until is None:
            return True
        if self._probing or self._now() < self._open_until:
            return False
        self._probing = True  # half-open: exactly one probe
        return True

    def success(self) -> None:
        self._failures = 0
        self._open_until = None
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.threshold:
            self._open_until = self._now() + self.cooldown_s
            self._probing = False
