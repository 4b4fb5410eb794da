"""Session generations in Redis: what makes sign-out end every session of a customer.

A signed cookie cannot be taken back, so each carries the customer's generation when it was
made (portal/sessions.py). Sign-out bumps the generation; a cookie of an older one then reads
as no session, on every device, a stolen copy included.
"""

from __future__ import annotations

from typing import Any

from tollway import schema


class Generations:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def current(self, customer: str) -> int:
        """The customer's generation now (0 until they first sign out)."""
        raw = await self.redis.get(schema.session_generation(customer))
        return int(raw or 0)

    async def end_all(self, customer: str) -> None:
        """End every session of ``customer``: the ones made before now read as none."""
        await self.redis.incr(schema.session_generation(customer))
