"""The drain loop: every interval, move closed usage on and send it to Stripe.

One pass:
1. find usage sources (accounts, and key ids) with usage, and customers with open or
   pending usage (SCAN);
2. for each group of sources: take their closed windows (with each one's account: who is
   billed) and transfer them to their customers (idempotent), a pipeline per step for the
   whole group;
3. for each group of customers: under each one's send lock (taken where no other daemon holds
   it), claim its open usage into pending events (one pipeline);
4. hand the group's pending events to the sink in batches (renewing the batch's locks first if
   the group has been sending for over half the lock's time), dead-letter or defer the events
   Stripe did not accept, then acknowledge the accepted and release the group's locks (one
   pipeline). A lock expires, so a dead daemon's customers are taken over.

Redis round trips grow with the number of groups, not of customers: one pass over 100,000
customers is about a thousand of them. Several daemons can run at once: every step is
idempotent or guarded by the send lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from metering.ledger import Ledger, Move, PendingEvent, Taken
from metering.metrics import MeteringMetrics
from metering.retry import SendResult
from metering.sinks import Sent, Sink, event_for
from tollway.key_store import KeyNotFound, KeyStore
from tollway.logs import fields
from tollway.records import Period
from tollway.tiers import Report, TierTable

log = logging.getLogger("tollway.metering")
T = TypeVar("T")
# Groups worked on at once: while one waits on Redis or Stripe, the next reads its replies.
IN_FLIGHT = 2


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
        group: int = 1000,
        silence_s: float = 30.0,
        redis_timeout_s: float = 10.0,
    ) -> None:
        self.keys = keys
        self.ledger = ledger
        self.sink = sink
        self.tiers = tiers
        self.metrics = metrics
        self.warn_age_s = warn_age_s
        self.lock_ms = lock_ms
        # Sources (or customers) moved (or sent) together: one pipeline per step per group.
        self.group = group
        # Each Redis step of a pass (a group's pipeline, a read) ends within this: the
        # daemon's client bounds no reply by itself (tollway.redis_client.connect).
        self.redis_timeout_s = redis_timeout_s
        # An access log (once heard) silent this long: refunds are not being applied.
        self.silence_s = silence_s
        self._silent = False
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{id(self):x}"

    async def _owner(self, taken: Taken) -> Move | None:
        """Where a source's taken usage goes (None: no account or key owns it): its account's
        plan (read with the take), or for a key id, its record (one read, rare)."""
        plan = taken.plan
        if plan.get("customer"):
            customer, tier = plan["customer"], plan.get("tier", "")
            period = Period(int(plan.get("period_start") or 0), int(plan.get("period_end") or 0))
        else:
            try:
                record = await self._step(self.keys.get(taken.source))
            except (KeyNotFound, ValueError):
                return None
            customer, tier = record.customer, record.tier
            period = Period(record.period_start, record.period_end)
        table = self.tiers()
        t = table.get(tier)
        included = t.monthly_quota if t and t.report is Report.OVERAGE else 0
        meter = table.meter_event(tier)
        return Move(taken, customer, meter, included, period, t.usage_meter if t else "")

    async def drain(self) -> PassResult:
        result = PassResult()
        await self._watch_access_log()
        sources, customers = await self._step(self.ledger.discover())

        async def move(group: list[str]) -> None:
            moves = []
            for taken in await self._step(self.ledger.take(group)):
                owner = await self._owner(taken)
                if owner is None:
                    await self._park_orphans(taken)
                else:
                    moves.append(owner)
                    customers.add(owner.customer)
            # Awaited first: `result.moved += await ...` would read `moved` before the await,
            # and groups moved at once would overwrite each other's counts.
            moved = await self._step(self.ledger.transfer(moves))
            result.moved += moved

        await each(self._groups(sources), move, IN_FLIGHT)
        deferred = await self._send_all(customers, result)
        oldest = min((p.window for p in deferred), default=None)
        self.metrics.pending.set(len(deferred))
        age = time.time() - oldest if oldest is not None else 0.0
        self.metrics.oldest_pending_age.set(age)
        if age > self.warn_age_s:
            log.error("usage_near_stripe_age_limit", extra=fields(age_days=round(age / 86400, 1)))
        return result

    async def _park_orphans(self, taken: Taken) -> None:
        source = taken.source
        parked = await self._step(self.ledger.park_orphans(taken))
        if parked:  # said once: parked usage is not seen again
            self.metrics.dead_letters.inc(len(parked))
            log.error(
                "usage_without_owner_parked",
                extra=fields(
                    source=source,
                    entries=[e for e, _ in parked],
                    units=sum(n for _, n in parked),
                    fix="tollway metering dead-letters list; create the owner and retry, or drop",
                ),
            )

    async def _step(self, step: Awaitable[T]) -> T:
        """One Redis step of the pass, bounded by ``redis_timeout_s`` (a TimeoutError ends
        the pass; every step is idempotent, so the next pass picks up where it stopped)."""
        async with asyncio.timeout(self.redis_timeout_s):
            return await step

    async def _watch_access_log(self) -> None:
        """Say so (metric, and a log line when it starts and ends) while no access-log receiver
        has an Envoy stream open, once one has: windows then close without their refunds,
        billed as counted at check time. (An Envoy opens its stream at its first request: a
        freshly started, idle Envoy reads as silent too.)"""
        heard = await self._step(self.ledger.access_log_heard())
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
        """For each group of customers: take the send locks we can get, claim their open usage,
        hand the pending events to the sink in batches, and release the locks; returns the
        events left pending for a later pass. A group's locks are held only while it is sent."""
        deferred: list[PendingEvent] = []
        sending = asyncio.Semaphore(self.sink.concurrency)  # the sink's bound, across groups
        await each(
            self._groups(customers),
            lambda group: self._send_group(group, result, deferred, sending),
            IN_FLIGHT,
        )
        return deferred

    def _groups(self, names: set[str]) -> list[list[str]]:
        ordered = sorted(names)
        return [ordered[i : i + self.group] for i in range(0, len(ordered), self.group)]

    async def _send_group(
        self,
        customers: list[str],
        result: PassResult,
        deferred: list[PendingEvent],
        sending: asyncio.Semaphore,
    ) -> None:
        held, claimed = await self._step(self.ledger.claim(customers, self.owner, self.lock_ms))
        if len(held) < len(customers):  # another daemon is sending for the others
            log.debug("customers_locked_elsewhere", extra=fields(count=len(customers) - len(held)))
        accepted: dict[str, list[PendingEvent]] = {c: [] for c in held}
        locked_at = time.monotonic()

        async def send(chunk: list[PendingEvent]) -> None:
            batch = chunk
            if (time.monotonic() - locked_at) * 1000 > self.lock_ms / 2:
                # Sending has taken long (Stripe slow, retries): renew the chunk's locks first;
                # a customer whose lock we lost is left to the lock's holder.
                ours = set(
                    await self._step(
                        self.ledger.renew(
                            sorted({p.customer for p in chunk}), self.owner, self.lock_ms
                        )
                    )
                )
                batch = [p for p in chunk if p.customer in ours]
            async with sending:
                sent = await self.sink.send(batch) if batch else []
            for p in await self._settle(sent, result, deferred):
                accepted[p.customer].append(p)

        try:
            size = self.sink.batch_size
            chunks = [claimed[j : j + size] for j in range(0, len(claimed), size)]
            await each(chunks, send, self.sink.concurrency)
        finally:
            # Acknowledged and released in one pipeline; an event sent but not acknowledged
            # (a crash here) is sent again under its identifier, which Stripe de-duplicates.
            await self._step(self.ledger.ack(accepted, self.owner))

    async def _settle(
        self, sent: list[Sent], result: PassResult, deferred: list[PendingEvent]
    ) -> list[PendingEvent]:
        """Record what Stripe said about each event: dead-letter it, keep it pending, or
        return it among the accepted (to acknowledge)."""
        accepted = []
        for p, outcome, reason in sent:
            result.sent[outcome] = result.sent.get(outcome, 0) + 1
            if outcome in (SendResult.ACCEPTED, SendResult.DUPLICATE):
                accepted.append(p)
                self.metrics.sent.labels(outcome.value).inc()
            elif outcome is SendResult.DEAD:
                await self._step(
                    self.ledger.dead_letter(p, event_for(p, self.ledger.window_s), reason)
                )
                self.metrics.dead_letters.inc()
                log.error(
                    "dead_letter",
                    extra=fields(identifier=p.identifier, customer=p.customer, reason=reason),
                )
            else:
                deferred.append(p)
                log.warning("send_deferred", extra=fields(identifier=p.identifier, reason=reason))
        return accepted
