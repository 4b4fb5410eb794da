"""One authz worker process: the check engine (authz/engine.py) served to Envoy over gRPC or
HTTP, started and stopped cleanly.

Signals: SIGTERM/SIGINT mark gRPC health NOT_SERVING, finish in-flight calls within
``shutdown_grace_s``, write back (or spool) buffered usage, and exit. SIGHUP reloads the tier
table; a bad file keeps the old table and logs why.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from authz import AUTH_SERVICE, responses
from authz.engine import CheckEngine
from authz.http_check import CheckApp
from authz.http_connection import HttpLimits
from authz.http_front import HttpFront
from authz.settings import AuthzSettings
from tollway import tls
from tollway.logs import fields

log = logging.getLogger("tollway.authz")


class Worker:
    def __init__(self, settings: AuthzSettings, index: int = 0) -> None:
        self.settings = settings
        self.index = index
        self.engine = CheckEngine(settings, f"authz-{settings.port}-{index}")
        self.service = self.engine.service
        self.metrics = self.engine.metrics
        self.tiers = self.engine.tiers
        self.health = health.aio.HealthServicer()
        self.server: Any = None  # gRPC mode
        self.http: HttpFront | None = None  # HTTP mode
        self._stop = asyncio.Event()

    async def start(self) -> int:
        """Start the engine, then serve; returns the bound port."""
        await self.engine.start()
        if self.settings.mode == "http":
            own = (
                self.settings.worker_port_base + self.index if self.settings.worker_port_base else 0
            )
            s = self.settings
            limits = HttpLimits(
                idle_s=s.http_idle_s, head_s=s.http_head_s, max_connections=s.http_max_connections
            )
            app = CheckApp(self.service.decide_http, self.service.unheard)
            self.http = HttpFront(app, limits, tls.server_context(s))
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
        port = tls.add_port(
            self.server, f"{self.settings.host}:{self.settings.port}", self.settings
        )
        if port == 0:
            raise OSError(f"cannot bind {self.settings.host}:{self.settings.port}")
        if self.settings.worker_port_base:
            own = self.settings.worker_port_base + self.index
            if tls.add_port(self.server, f"{self.settings.host}:{own}", self.settings) == 0:
                raise OSError(f"cannot bind this worker's own port {self.settings.host}:{own}")
        await self.server.start()
        for name in ("", AUTH_SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.stop(self.settings.drain_s, self.settings.shutdown_grace_s)
        else:
            await self.health.enter_graceful_shutdown()
            await asyncio.sleep(self.settings.drain_s)  # Envoy's health check moves traffic away
            await self.server.stop(self.settings.shutdown_grace_s)
        await self.engine.stop()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.tiers.follow(loop)
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
        await self._stop.wait()
        started = time.monotonic()
        log.info("stopping", extra=fields(worker=self.index))
        await self.stop()
        if http is not None:
            http.shutdown()
        log.info(
            "stopped", extra=fields(worker=self.index, took_s=round(time.monotonic() - started, 3))
        )
