"""One authz worker process: build everything from settings, serve, and stop cleanly.

Signals: SIGTERM/SIGINT mark gRPC health NOT_SERVING, finish in-flight calls within
``shutdown_grace_s``, write back (or spool) buffered usage, and exit. SIGHUP reloads the tier
table; a bad file keeps the old table and logs why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from authz import AUTH_SERVICE, invalidation, responses
from authz.breaker import Breaker
from authz.check_store import CheckStore
from authz.check_tiers import CheckTiers
from authz.http_connection import HttpLimits
from authz.http_front import HttpFront
from authz.leases import LeaseBook
from authz.metrics import AuthzMetrics
from authz.redis_check_store import RedisCheckStore
from authz.redis_pipe import open_pipe
from authz.servicer import AuthzServicer
from authz.settings import AuthzSettings
from authz.usage_buffer import UsageBuffer
from tollway import scripts
from tollway.clock import RedisTime
from tollway.keys import KeyHasher
from tollway.logs import fields
from tollway.redis_client import connect
from tollway.tier_source import TierSource
from tollway.usage_stamp import Stamper

log = logging.getLogger("tollway.authz")

FLUSH_INTERVAL_S = 0.5
WARM_S = 2.0


class Worker:
    def __init__(self, settings: AuthzSettings, index: int = 0) -> None:
        self.settings = settings
        self.index = index
        self.metrics = AuthzMetrics()
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
        )
        self.tiers = TierSource(settings.tiers)
        self.service = AuthzServicer(
            CheckTiers(self.tiers()),
            self.store,
            KeyHasher(settings.key_pepper.encode()),
            self.buffer,
            self.metrics,
            LeaseBook(settings.lease_ttl_ms / 1000, accepting=False),  # until subscribed
            Stamper(settings.usage_log_secret) if settings.usage_log_secret else None,
            settings.log_allowed,
        )
        self.tiers.on_change(self.service.use_tiers)
        self.health = health.aio.HealthServicer()
        self.server: Any = None  # gRPC mode
        self.http: HttpFront | None = None  # HTTP mode
        self._stop = asyncio.Event()

    @property
    def spool_name(self) -> str:
        return f"authz-{self.settings.port}-{self.index}"

    async def warm(self) -> None:
        """Connect to Redis and load check.lua before serving. A worker started in a rolling
        restart would otherwise pay the connects and a NOSCRIPT round trip inside its first
        checks' 100 ms, and `make test-stress` saw one such check answer 503. Redis being
        away delays the start by at most WARM_S: the tiers' on_store_error still answers."""
        try:
            await asyncio.wait_for(self.pipe.script_load(scripts.lua("check")), WARM_S)
        except Exception as exc:
            log.warning("store_warmup_failed", extra=fields(worker=self.index, error=str(exc)))

    async def start(self) -> int:
        """Start serving; returns the bound port."""
        await self.warm()
        loaded = self.buffer.load(self.settings.spool_dir)
        if loaded:
            log.warning("spooled_usage_loaded", extra=fields(requests=loaded))
        if self.settings.mode == "http":
            own = (
                self.settings.worker_port_base + self.index if self.settings.worker_port_base else 0
            )
            s = self.settings
            limits = HttpLimits(
                idle_s=s.http_idle_s, head_s=s.http_head_s, max_connections=s.http_max_connections
            )
            self.http = HttpFront(self.service.decide_http, self.service.unheard, limits)
            return await self.http.start(self.settings.host, self.settings.port, own)
        # SO_REUSEPORT lets --workers processes share one port.
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
        responses.add_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [
                AUTH_SERVICE,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        port = int(self.server.add_insecure_port(f"{self.settings.host}:{self.settings.port}"))
        if port == 0:
            raise OSError(f"cannot bind {self.settings.host}:{self.settings.port}")
        if self.settings.worker_port_base:
            own = self.settings.worker_port_base + self.index
            if int(self.server.add_insecure_port(f"{self.settings.host}:{own}")) == 0:
                raise OSError(f"cannot bind this worker's own port {self.settings.host}:{own}")
        await self.server.start()
        for name in ("", AUTH_SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def flush_loop(self) -> None:
        """Write back usage buffered during a store outage once the store answers again."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            if not len(self.buffer):
                continue
            try:
                n = await self.store.write_back(self.buffer)
            except Exception as exc:  # any failure keeps the counts for the next round
                log.warning("usage_flush_failed", extra=fields(error=repr(exc)))
            else:
                if n is not None:
                    log.info("usage_flushed", extra=fields(requests=n))
            self.metrics.buffered_usage.set(len(self.buffer))

    async def settle_loop(self) -> None:
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
        if self.http is not None:
            await self.http.stop(self.settings.drain_s, self.settings.shutdown_grace_s)
        else:
            await self.health.enter_graceful_shutdown()
            await asyncio.sleep(self.settings.drain_s)  # Envoy's health check moves traffic away
            await self.server.stop(self.settings.shutdown_grace_s)
        leases = self.service.leases
        leases.close_all()
        await self._settle()
        for owed in leases.due():  # Redis is away: keep the count as buffered usage
            source = self.service.store.usage_source(owed.key_id)
            self.buffer.add(source, time.time(), n=owed.spent, write_id=owed.id)
        try:
            await asyncio.wait_for(self.buffer.flush(self.redis), timeout=1.0)
        except Exception as exc:
            path = self.buffer.save(self.settings.spool_dir, self.spool_name)
            log.error("usage_spooled", extra=fields(path=str(path), error=repr(exc)))
        with contextlib.suppress(Exception):
            await self.pipe.aclose()
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.tiers.reload_on_sighup(loop)
        port = await self.start()
        http = None
        if self.settings.metrics_port:
            http, _ = start_http_server(self.settings.metrics_port + self.index, self.settings.host)
        log.info(
            "serving",
            extra=fields(
                port=port, worker=self.index, mode=self.settings.mode, tiers=self.settings.tiers
            ),
        )
        tasks = [
            asyncio.create_task(self.flush_loop()),
            asyncio.create_task(self.settle_loop()),
            asyncio.create_task(invalidation.listen(self.redis, self.service.leases)),
        ]
        await self._stop.wait()
        started = time.monotonic()
        log.info("stopping", extra=fields(worker=self.index))
        for task in tasks:
            task.cancel()
        await self.stop()
        if http is not None:
            http.shutdown()
        log.info(
            "stopped", extra=fields(worker=self.index, took_s=round(time.monotonic() - started, 3))
        )
