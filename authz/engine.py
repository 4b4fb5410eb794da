"""The check engine: everything a decision needs, built from settings, and the work that keeps
it right, apart from any transport.

authz's worker (authz/server.py) serves it to Envoy over gRPC or HTTP; the management API's
``POST /v1/keys/verify`` (api/verify.py) serves it to callers outside Envoy. Both therefore
run the one decision: check.lua in coalesced pipelines under a deadline and a breaker, lease
tiers, the tier table with SIGHUP reloads, usage buffered while Redis is away (written back,
or spooled on exit), and the key-change listener that closes leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from authz import invalidation
from authz.breaker import Breaker
from authz.check_store import CheckStore, StoreUnavailable
from authz.check_tiers import CheckTiers
from authz.decision import CREDITS_HEADER, Decision
from authz.leases import LeaseBook
from authz.metrics import AuthzMetrics
from authz.redis_check_store import RedisCheckStore
from authz.redis_pipe import is_noscript, open_pipe
from authz.request import MAX_COST, RequestInfo
from authz.servicer import AuthzServicer
from authz.settings import CheckSettings
from authz.usage_buffer import UsageBuffer
from tollway import scripts
from tollway.audit import AuditLog
from tollway.cancel import stop_tasks
from tollway.clock import RedisTime
from tollway.eviction import EvictionWatch
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.logs import fields
from tollway.redis_client import connect
from tollway.store_identity import store_id
from tollway.tier_source import TierSource
from tollway.usage_stamp import Stamper

log = logging.getLogger("tollway.authz")

FLUSH_INTERVAL_S = 0.5
WARM_S = 2.0


@dataclass(frozen=True)
class Verdict:
    """A decision as a caller outside Envoy reads it (the management API's verify)."""

    valid: bool
    code: str  # "ok", or the denial's reason: the code Envoy's JSON denial carries
    message: str
    key_id: str | None
    account: str | None
    customer: str | None
    tier: str | None
    remaining: int | None  # RateLimit-Remaining: the bucket's (the quota's when it is spent)
    reset: int | None  # RateLimit-Reset, seconds
    external_id: str | None
    credits: int | None = None  # a prepaid account's balance after this call


class CheckEngine:
    def __init__(
        self,
        settings: CheckSettings,
        spool_name: str,
        stamps: bool = True,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        """``spool_name``: the file usage is spooled to if Redis is away at exit (one per
        process); ``stamps``: sign usage stamps for Envoy's access log (when the secret is
        set; a caller outside Envoy has no access log), and take concurrency slots, which
        only that log frees; ``registry``: where its metrics go."""
        self.settings = settings
        self.spool_name = spool_name
        self.registry = registry
        self.metrics = AuthzMetrics(registry)
        self.redis = connect(
            settings.redis_url, timeout_s=settings.store_timeout_ms / 1000, cluster_retries=0
        )
        self.buffer = UsageBuffer(settings.usage_window_s)
        breaker = Breaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self.pipe = open_pipe(settings.redis_url, settings.store_timeout_ms / 1000)
        self.store: CheckStore = RedisCheckStore(
            self.pipe,
            self.redis,
            RedisTime(),
            breaker,
            settings.check_deadline_ms / 1000,
            settings.usage_window_s,
            self.metrics.store_pipelines.inc,
            # Whatever Redis runs within 80% of the socket timeout is answered before authz
            # gives up on it; whatever it runs later (it was frozen) is void.
            expire_after_ms=0.8 * settings.store_timeout_ms,
            on_reply_lost=self.metrics.store_replies_lost.inc,
            known_keys=settings.key_cache,
            slot_ms=round(settings.slot_s * 1000),
        )
        self.tiers = TierSource(settings.tiers)
        secret = settings.usage_log_secret if stamps else ""
        hasher = KeyHasher.configured(settings)
        # While the key pepper rotates, a key unknown under the new one is looked for (and
        # moved) under the earlier ones: once per key and process, off the check path's client.
        keys = KeyStore(self.redis, hasher, AuditLog.configured(self.redis, settings))
        self.service = AuthzServicer(
            CheckTiers(self.tiers()),
            self.store,
            hasher,
            self.buffer,
            self.metrics,
            LeaseBook(settings.lease_ttl_ms / 1000, accepting=False),  # until subscribed
            Stamper(secret) if secret else None,
            settings.log_allowed,
            settings.key_cache,
            keys.move if hasher.earlier else None,
            slots=stamps,
        )
        self.tiers.on_change(self.service.use_tiers)
        self.store_id = ""  # the store's id (tollway/store_identity.py), once read
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Connect to Redis and load check.lua (a worker started in a rolling restart would
        otherwise pay the connects and a NOSCRIPT round trip inside its first checks' 100 ms,
        and `make test-stress` saw one such check answer 503; Redis being away delays the
        start by at most WARM_S: the tiers' on_store_error still answers); read the store's
        id and load the usage spooled for it (or, Redis away, once it answers); start the
        loops."""
        try:
            await asyncio.wait_for(self.pipe.script_load(scripts.lua("check")), WARM_S)
            await asyncio.wait_for(self._identify(), WARM_S)
        except Exception as exc:
            log.warning("store_warmup_failed", extra=fields(spool=self.spool_name, error=str(exc)))
        self._tasks = [
            asyncio.create_task(self._flush_loop()),
            asyncio.create_task(self._settle_loop()),
            asyncio.create_task(invalidation.listen(self.redis, self.service.leases)),
            asyncio.create_task(EvictionWatch(self.redis, self.metrics.may_evict, log).run()),
        ]

    async def verify(self, key: str, cost: int = 1, feature: str | None = None) -> Verdict:
        """The decision for a request presenting ``key``, costing ``cost`` (0..MAX_COST) on a
        route needing ``feature``: the one Envoy's check gets, counted the same way."""
        if not 0 <= cost <= MAX_COST:
            raise ValueError(f"cost must be 0 to {MAX_COST}")
        info = RequestInfo(key=key.strip() or None, strip=(), cost=cost, feature=feature)
        d = self.service.decide(lambda i: i, info)
        if not isinstance(d, Decision):
            d = await d
        headers = dict(d.client_headers)
        key_id = d.key_id or None
        return Verdict(
            valid=d.allowed,
            code=d.reason.value if d.reason is not None else "ok",
            message=d.message if d.reason is not None else "",
            key_id=key_id,
            account=self.store.usage_source(d.key_id) if key_id and d.customer else None,
            customer=d.customer or None,
            tier=d.tier or None,
            remaining=_int(headers.get("ratelimit-remaining")),
            reset=_int(headers.get("ratelimit-reset")),
            external_id=(self.store.external_id_of(d.key_id) or None) if key_id else None,
            credits=_int(headers.get(CREDITS_HEADER)),
        )

    async def commands(self, *commands: tuple[Any, ...]) -> list[Any]:
        """``commands`` as one pipeline on the engine's lean client (authz/redis_pipe.py:
        hiredis over asyncio.Protocol, 2 µs of client CPU per command where redis-py costs
        32), for work on the same hot path as a check: the management API's token lookup and
        rate before a verify. An EVALSHA of a tollway script (``scripts.call``) that meets
        NOSCRIPT is loaded and sent again. Raises StoreUnavailable when Redis cannot answer,
        or answers an error."""
        try:
            replies = await self.pipe.execute(list(commands))
            missing = [i for i, r in enumerate(replies) if is_noscript(r)]
            for i in missing:
                await self.pipe.script_load(scripts.by_sha1(commands[i][1]))
                (replies[i],) = await self.pipe.execute([commands[i]])
        except Exception as exc:  # nothing was sent: the node is unreachable
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreUnavailable(f"{type(reply).__name__}: {reply}") from reply
        return replies

    async def _identify(self) -> None:
        """Read the store's id (made if it has none), then load the usage spooled for it and
        report the spool files of other stores, once."""
        self.store_id = await store_id(self.redis)
        loaded, foreign = self.buffer.load(self.settings.spool_dir, self.store_id)
        if loaded:
            log.warning("spooled_usage_loaded", extra=fields(requests=loaded, store=self.store_id))
        for f in foreign:
            log.error(
                "spooled_usage_of_another_store",
                extra=fields(
                    path=str(f.path),
                    store=f.store or "unknown",
                    this_store=self.store_id,
                    requests=f.requests,
                    fix="tollway usage spool list; load it into its own store, or drop it",
                ),
            )
        self.metrics.spooled_foreign.set(sum(f.requests for f in foreign))

    async def _same_store(self) -> bool:
        """Whether Redis is still the store this process counted for: a store emptied
        (FLUSHALL) or replaced meanwhile is another, and buffered usage is not its own."""
        now = await store_id(self.redis)
        if now == self.store_id:
            return True
        path = self.buffer.save(self.settings.spool_dir, self.spool_name, self.store_id)
        log.error(
            "store_changed",
            extra=fields(was=self.store_id, now=now, spooled=str(path) if path else ""),
        )
        self.store_id = now  # from here on, what this process counts is the new store's
        return False

    async def _flush_loop(self) -> None:
        """Read the store's id if the start could not; write back usage buffered during a
        store outage once the store answers again, if it is still the same store."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            if not self.store_id:
                try:
                    await self._identify()
                except Exception as exc:  # Redis still away
                    log.debug("store_unknown", extra=fields(error=repr(exc)))
                    continue
            if not len(self.buffer):
                continue
            try:
                if not await self._same_store():
                    continue
                n = await self.store.write_back(self.buffer)
            except Exception as exc:  # any failure keeps the counts for the next round
                log.warning("usage_flush_failed", extra=fields(error=repr(exc)))
            else:
                if n is not None:
                    log.info("usage_flushed", extra=fields(requests=n))
            self.metrics.buffered_usage.set(len(self.buffer))

    async def _settle_loop(self) -> None:
        """Settle expired and closed leases: count what they let through, return the rest."""
        interval = min(0.25, self.settings.lease_ttl_ms / 4000)
        while True:
            await asyncio.sleep(interval)
            await self._settle()

    async def _settle(self) -> None:
        try:
            await self.service.settle_leases()
        except Exception as exc:  # whatever failed stays owed in the lease book
            log.warning("lease_settle_failed", extra=fields(error=repr(exc)))
        self.metrics.lease_owed.set(self.service.leases.owed)

    async def stop(self) -> None:
        """After the last check: settle every lease, write back (or spool) buffered usage,
        close the connections."""
        await stop_tasks(self._tasks)
        leases = self.service.leases
        leases.close_all()
        await self._settle()
        for owed in leases.due():  # Redis is away: keep the count as buffered usage
            source = self.service.store.usage_source(owed.key_id)
            self.buffer.add(source, time.time(), n=owed.spent, write_id=owed.id)
        error = "the store's id was never read"
        try:
            ours = bool(len(self.buffer) and self.store_id)
            if ours and await asyncio.wait_for(self._same_store(), 1.0):
                await asyncio.wait_for(self.buffer.flush(self.redis), timeout=1.0)
        except Exception as exc:
            error = repr(exc)
        if len(self.buffer):  # not written back: spooled for the store it was counted for
            path = self.buffer.save(self.settings.spool_dir, self.spool_name, self.store_id)
            log.error("usage_spooled", extra=fields(path=str(path), error=error))
        with contextlib.suppress(Exception):
            await self.pipe.aclose()
        with contextlib.suppress(Exception):
            await self.redis.aclose()


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None
