"""Usage Stripe could not bill, parked for an operator: one hash, written by two services.

metering parks each meter event Stripe refused for good; the webhook service records each
meter error report Stripe sends (``v1.billing.meter.error_report_triggered``). ``tollway
metering dead-letters`` lists them, retries a refused event and drops what is dealt with.
Each entry is ``identifier -> JSON``; a record with ``kind = "meter_error_report"`` is
Stripe's report, not an event, and cannot be retried.
"""

from __future__ import annotations

import json
from typing import Any

from tollway import schema

ERROR_REPORT = "meter_error_report"


class DeadLetters:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def park(self, identifier: str, record: dict[str, Any]) -> None:
        await self.redis.hset(schema.DEAD_LETTERS, identifier, json.dumps(record))

    async def get(self, identifier: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(schema.DEAD_LETTERS, identifier)
        return None if raw is None else dict(json.loads(raw))

    async def all(self) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(schema.DEAD_LETTERS)
        return {k: json.loads(v) for k, v in raw.items()}

    async def remove(self, identifier: str) -> bool:
        return bool(await self.redis.hdel(schema.DEAD_LETTERS, identifier))
