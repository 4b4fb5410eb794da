"""The drain loop: every interval, move closed usage on and send it to Stripe.

One pass:
1. find key ids with usage and customers with open or pending usage (SCAN);
2. for each key: take its closed windows and transfer them to its customer (idempotent);
3. for each customer whose sending lease we get: claim open usage into pending events, send
   each, ack or dead-letter it. A lease expires, so a dead daemon's customers are taken over.

Several daemons can run at once: every step is idempotent or guarded by the lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from metering.ledger import Ledger, Pending, Period
from metering.metrics import MeteringMetrics
from metering.sender import Outcome, Sender, event_for
from metering.stream import BATCH, StreamSender
from tollway import schema
from tollway.logs import fields
from tollway.tiers import Report, TierTable

log = logging.getLogger("tollway.metering")
T = TypeVar("T")


async def each(items: Iterable[T], fn: Callable[[T], Awaitable[Any]], width: int) -> None:
    """``fn`` over ``items``, at most ``width`` at a time (Redis round trips overlap)."""
    sem = asyncio.Semaphore(width)

    async def one(item: T) -> None:
        async with sem:
            await fn(item)

    await asyncio.gather(*(one(i) for i in items))


@dataclass
class PassResult:
    moved: int = 0
    sent: dict[Outcome, int] = field(default_factory=dict)


class Drainer:
    def __init__(
        self,
        redis: Any,
        ledger: Ledger,
        sender: Sender,
        tiers: Any,  # () -> TierTable
        metrics: MeteringMetrics,
        warn_age_s: float,
        lease_ms: int = 10_000,
        stream: StreamSender | None = None,
        width: int = 64,
    ) -> None:
        self.redis = redis
        self.ledger = ledger
        self.sender = sender
        self.tiers = tiers
        self.metrics = metrics
        self.warn_age_s = warn_age_s
        self.lease_ms = lease_ms
        self.stream = stream
        self.width = width  # keys or customers worked on at once
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{id(self):x}"

    async def _owner_of(self, key_id: str) -> tuple[str, str, int, Period] | None:
        """(customer, meter, included requests to leave unreported, billing period) of a key."""
        customer, tier, start, end = await self.redis.hmget(
            schema.key_record(key_id), "customer", "tier", "period_start", "period_end"
        )
        if not customer:
            return None
        table: TierTable = self.tiers()
        t = table.get(tier or "")
        meter = t.meter_event if t else "api_requests"
        included = t.monthly_quota if t and t.report is Report.OVERAGE else 0
        return customer, meter, included, Period(int(start or 0), int(end or 0))

    async def drain(self) -> PassResult:
        result = PassResult()
        keys, customers = await self.ledger.discover()

        async def move(key_id: str) -> None:
            owner = await self._owner_of(key_id)
            if owner is None:
                log.error("usage_without_key_record", extra=fields(key_id=key_id))
                return
            customer, meter, included, period = owner
            # Await first: `result.moved += await ...` would read `moved` before the await, and
            # keys moved concurrently would overwrite each other's counts.
            moved = await self.ledger.move_key(key_id, customer, meter, included, period)
            result.moved += moved
            customers.add(customer)

        await each(sorted(keys), move, self.width)
        deferred = await (
            self._stream_all(customers, result)
            if self.stream
            else self._send_all(customers, result)
        )
        oldest = min((p.window for p in deferred), default=None)
        self.metrics.pending.set(len(deferred))
        age = time.time() - oldest if oldest is not None else 0.0
        self.metrics.oldest_pending_age.set(age)
        if age > self.warn_age_s:
            log.error("usage_near_stripe_age_limit", extra=fields(age_days=round(age / 86400, 1)))
        return result

    async def _send_all(self, customers: set[str], result: PassResult) -> list[Pending]:
        """v1: each customer under its lease, one event per request, many customers at once
        (the rate limiter keeps the total under Stripe's limit)."""
        deferred: list[Pending] = []

        async def send_for(customer: str) -> None:
            if not await self.ledger.lease(customer, self.owner, self.lease_ms):
                log.debug("customer_leased_elsewhere", extra=fields(customer=customer))
                return  # another daemon is sending for this customer
            try:
                for p in await self.ledger.claim(customer):
                    if not await self.ledger.lease(customer, self.owner, self.lease_ms):
                        break  # we were too slow and lost the lease: leave the rest to its holder
                    outcome, reason = await self.sender.send(p)
                    await self._settle(p, outcome, reason, result, deferred)
            finally:
                await self.ledger.release(customer, self.owner)

        await each(sorted(customers), send_for, self.width)
        return deferred

    async def _stream_all(self, customers: set[str], result: PassResult) -> list[Pending]:
        """v2 stream: claim every leased customer, then send 100 events per request."""
        assert self.stream is not None
        held: list[str] = []
        claimed: list[Pending] = []
        deferred: list[Pending] = []

        async def claim(customer: str) -> None:
            if await self.ledger.lease(customer, self.owner, self.lease_ms):
                held.append(customer)
                claimed.extend(await self.ledger.claim(customer))

        try:
            await each(sorted(customers), claim, self.width)
            for i in range(0, len(claimed), BATCH):
                chunk = claimed[i : i + BATCH]
                renewed = await asyncio.gather(
                    *(self.ledger.lease(c, self.owner, self.lease_ms) for c in {p.customer for p in chunk})
                )  # fmt: skip
                ours = {c for c, ok in zip({p.customer for p in chunk}, renewed, strict=True) if ok}
                batch = [p for p in chunk if p.customer in ours]
                for p, outcome, reason in await self.stream.send_batch(batch) if batch else []:
                    await self._settle(p, outcome, reason, result, deferred)

        finally:
            await each(held, lambda c: self.ledger.release(c, self.owner), self.width)
        return deferred

    async def _settle(
        self, p: Pending, outcome: Outcome, reason: str, result: PassResult, deferred: list[Pending]
    ) -> None:
        """Record what Stripe said about one event: ack it, dead-letter it, or keep it pending."""
        result.sent[outcome] = result.sent.get(outcome, 0) + 1
        if outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE):
            await self.ledger.ack(p)
            self.metrics.sent.labels(outcome.value).inc()
        elif outcome is Outcome.DEAD:
            await self.ledger.dead_letter(p, event_for(p, self.sender.window_s), reason)
            self.metrics.dead_letters.inc()
            log.error(
                "dead_letter",
                extra=fields(identifier=p.identifier, customer=p.customer, reason=reason),
            )
        else:
            deferred.append(p)
            log.warning("send_deferred", extra=fields(identifier=p.identifier, reason=reason))
