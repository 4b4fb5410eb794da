"""Credit expiry: a pass in the portal that expires what is left of prepaid credits past their
tier's ``credits_expire_days``, oldest first, once (tollway/credits.py ``expire``, one
``expiry`` ledger entry per pass that finds some). Credits expire at the first pass after
their time: in the customer's favour by up to an interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from portal.passes import every, owner
from tollway import schema
from tollway.credits import Credits
from tollway.key_store import text
from tollway.logs import fields
from tollway.records import DAY_S
from tollway.scan import tags_by_suffix
from tollway.tiers import TierTable

log = logging.getLogger("tollway.portal.expiry")


class Expirer:
    def __init__(self, redis: Any, tiers: Callable[[], TierTable]) -> None:
        self.redis = redis
        self.tiers = tiers
        self.credits = Credits(redis)
        self.owner = owner()

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        await every(
            self.redis,
            schema.EXPIRY_PASS,
            self.owner,
            interval_s,
            stop,
            self.run_once,
            log,
            "expiry_pass_failed",
        )

    async def run_once(self) -> dict[str, int]:
        """One pass: the credits expired now, by account (only those where some did)."""
        found = await tags_by_suffix(self.redis, ("log",), f"{schema.PREFIX}:{{*}}:credits:log")
        out = {}
        for account in sorted(found["log"]):
            tier_name = await self.redis.hget(schema.account_state(account), "tier")
            tier = self.tiers().get(text(tier_name)) if tier_name else None
            if tier is None or not tier.prepaid or not tier.credits_expire_days:
                continue
            moved = await self.credits.expire(account, tier.credits_expire_days * DAY_S, "expiry")
            if moved.applied:
                out[account] = -moved.credits
                log.info("credits_expired", extra=fields(account=account, credits=-moved.credits))
        return out
