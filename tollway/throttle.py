"""Fixed-window counters in Redis, for what a stranger may ask for: sign-in links, sign-ups,
Checkout sessions, key claims. One script (count_in_window.lua) counts and sets the expiry
atomically, so no counter outlives its window."""

from __future__ import annotations

import hashlib
from typing import Any

from tollway import schema, scripts


class Throttle:
    def __init__(self, redis: Any, window_s: int) -> None:
        self.window_s = window_s
        self._count = scripts.register(redis, "count_in_window")

    async def hit(self, kind: str, who: str, limit: int) -> bool:
        """Count one request of ``kind`` by ``who`` (an address, a client IP); False once
        more than ``limit`` came in this window. ``who`` is kept only as its SHA-256."""
        name = counter(kind, who)
        return int(await self._count(keys=[name], args=[str(self.window_s)])) <= limit


def counter(kind: str, who: str) -> str:
    """The Redis key that counts ``kind`` by ``who`` (count_in_window.lua's KEYS[1])."""
    return schema.throttle(kind, hashlib.sha256(who.encode()).hexdigest())
