"""The drain loop: every interval, move closed usage on and send it to Stripe.

One pass:
1. find usage sources (accounts, and key ids) with usage, and customers with open or
   pending usage (SCAN);
2. for each source: take its closed windows and transfer them to its customer (idempotent);
3. for each customer whose send lock we get: claim open usage into pending events;
4. hand the pending events to the sink in batches (renewing the lock of each batch's
   customers first), and ack, dead-letter or defer each by the sink's result. A lock
   expires, so a dead daemon's customers are taken over.

Several daemons can run at once: every step is idempotent or guarded by the send lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from metering.ledger import Ledger, PendingEvent
from metering.metrics import MeteringMetrics
from metering.retry import SendResult
from metering.sinks import Sink, event_for
from tollway.key_store import KeyNotFound, KeyStore
from tollway.logs import fields
from tollway.records import Period
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
    sent: dict[SendResult, int] = field(default_factory=dict)


class Drainer:
    def __init__(
        self,
        keys: KeyStore,
        ledger: Ledger,
        sink: Sink,
        tiers: Callable[[], TierTable],
        metrics: MeteringMetrics,
        warn_age_s: float,
        lock_ms: int = 10_000,
        width: int = 64,
        silence_s: float = 30.0,
    ) -> None:
        self.keys = keys
        self.ledger = ledger
        self.sink = sink
        self.tiers = tiers
        self.metrics = metrics
        self.warn_age_s = warn_age_s
        self.lock_ms = lock_ms
        self.width = width  # keys or customers worked on at once
        # An access log (once heard) silent this long: refunds are not being applied.
        self.silence_s = silence_s
        self._silent = False
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{id(self):x}"

    async def _owner_of(self, source: str) -> tuple[str, str, int, Period, str] | None:
        """(customer, meter, included requests to leave unreported, billing period, the meter
        of reported amounts or "") of a usage source: an account (its own fields), or a key id
        (its record)."""
        account = await self.keys.account_plan(source)
        if account.get("customer"):
            customer, tier = account["customer"], account.get("tier", "")
            period = Period(
                int(account.get("period_start") or 0), int(account.get("period_end") or 0)
            )
        else:
            try:
                record = await self.keys.get(source)
            except (KeyNotFound, ValueError):
                return None
            customer, tier = record.customer, record.tier
            period = Period(record.period_start, record.period_end)
        table = self.tiers()
        t = table.get(tier)
        meter = table.meter_event(tier)
        included = t.monthly_quota if t and t.report is Report.OVERAGE else 0
        return customer, meter, included, period, t.usage_meter if t else ""

    async def drain(self) -> PassResult:
        result = PassResult()
        await self._watch_access_log()
        sources, customers = await self.ledger.discover()

        async def move(source: str) -> None:
            owner = await self._owner_of(source)
            if owner is None:
                parked = await self.ledger.park_orphans(source)
                if parked:  # said once: parked usage is not seen again
                    self.metrics.dead_letters.inc(len(parked))
                    log.error(
                        "usage_without_owner_parked",
                        extra=fields(
                            source=source,
                            entries=[e for e, _ in parked],
                            units=sum(n for _, n in parked),
                            fix="tollway metering dead-letters list; create the owner and "
                            "retry, or drop",
                        ),
                    )
                return
            customer, meter, included, period, amount_meter = owner
            # Await first: `result.moved += await ...` would read `moved` before the await, and
            # keys moved concurrently would overwrite each other's counts.
            moved = await self.ledger.move_usage(
                source, customer, meter, included, period, amount_meter
            )
            result.moved += moved
            customers.add(customer)

        await each(sorted(sources), move, self.width)
        deferred = await self._send_all(customers, result)
        oldest = min((p.window for p in deferred), default=None)
        self.metrics.pending.set(len(deferred))
        age = time.time() - oldest if oldest is not None else 0.0
        self.metrics.oldest_pending_age.set(age)
        if age > self.warn_age_s:
            log.error("usage_near_stripe_age_limit", extra=fields(age_days=round(age / 86400, 1)))
        return result

    async def _watch_access_log(self) -> None:
        """Say so (metric, and a log line when it starts and ends) while no access-log receiver
        has an Envoy stream open, once one has: windows then close without their refunds,
        billed as counted at check time. (An Envoy opens its stream at its first request: a
        freshly started, idle Envoy reads as silent too.)"""
        heard = await self.ledger.access_log_heard()
        silent = heard is not None and time.time() - heard > self.silence_s
        self.metrics.access_log_silent.set(1 if silent else 0)
        if silent and not self._silent:
            log.error(
                "access_log_silent",
                extra=fields(
                    since_s=round(time.time() - (heard or 0)),
                    effect="refunds are not applied; usage is billed as counted at check time",
                ),
            )
        elif self._silent and not silent:
            log.info("access_log_heard_again")
        self._silent = silent

    async def _send_all(self, customers: set[str], result: PassResult) -> list[PendingEvent]:
        """Claim every customer whose send lock we get, then hand their pending events to the
        sink in batches; returns the events left pending for a later pass."""
        held: list[str] = []
        claimed: list[PendingEvent] = []
        deferred: list[PendingEvent] = []

        async def claim(customer: str) -> None:
            if not await self.ledger.lock(customer, self.owner, self.lock_ms):
                log.debug("customer_locked_elsewhere", extra=fields(customer=customer))
                return  # another daemon is sending for this customer
            held.append(customer)
            claimed.extend(await self.ledger.claim(customer))

        async def send(chunk: list[PendingEvent]) -> None:
            owners = sorted({p.customer for p in chunk})
            renewed = await asyncio.gather(
                *(self.ledger.lock(c, self.owner, self.lock_ms) for c in owners)
            )
            # A customer whose lock we lost (we were too slow) is left to the lock's holder.
            ours = {c for c, ok in zip(owners, renewed, strict=True) if ok}
            batch = [p for p in chunk if p.customer in ours]
            for p, sent, reason in await self.sink.send(batch) if batch else []:
                await self._settle(p, sent, reason, result, deferred)

        try:
            await each(sorted(customers), claim, self.width)
            size = self.sink.batch_size
            chunks = [claimed[i : i + size] for i in range(0, len(claimed), size)]
            await each(chunks, send, self.sink.concurrency)
        finally:
            await each(held, lambda c: self.ledger.unlock(c, self.owner), self.width)
        return deferred

    async def _settle(
        self,
        p: PendingEvent,
        sent: SendResult,
        reason: str,
        result: PassResult,
        deferred: list[PendingEvent],
    ) -> None:
        """Record what Stripe said about one event: ack it, dead-letter it, or keep it pending."""
        result.sent[sent] = result.sent.get(sent, 0) + 1
        if sent in (SendResult.ACCEPTED, SendResult.DUPLICATE):
            await self.ledger.ack(p)
            self.metrics.sent.labels(sent.value).inc()
        elif sent is SendResult.DEAD:
            await self.ledger.dead_letter(p, event_for(p, self.ledger.window_s), reason)
            self.metrics.dead_letters.inc()
            log.error(
                "dead_letter",
                extra=fields(identifier=p.identifier, customer=p.customer, reason=reason),
            )
        else:
            deferred.append(p)
            log.warning("send_deferred", extra=fields(identifier=p.identifier, reason=reason))
