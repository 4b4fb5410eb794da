"""Build the management API from settings and run it until SIGTERM: the aiohttp listener
(every operation, api/app.py) and verify's lean listener (api/verify_front.py), over one
pipeline and one check engine."""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from api.app import ApiApp
from api.operations import Services
from api.pipeline import Pipeline
from api.settings import ApiSettings
from api.verify_front import VerifyApp
from authz.engine import CheckEngine
from authz.http_connection import HttpLimits
from authz.http_front import HttpFront
from tollway.api_tokens import ApiTokens
from tollway.audit import AuditLog
from tollway.clock import WallClock
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.logs import fields
from tollway.process import stop_on_signals
from tollway.redis_client import connect

log = logging.getLogger("tollway.api")

VERIFY_GRACE_S = 5.0  # verifies in flight at SIGTERM finish within this


def pipeline(settings: ApiSettings, redis: object, engine: CheckEngine) -> Pipeline:
    hasher = KeyHasher.configured(settings)
    clock = WallClock()
    audit = AuditLog.configured(redis, settings, clock)
    services = Services(KeyStore(redis, hasher, audit), audit, clock, engine)
    return Pipeline(services, ApiTokens(redis, hasher, audit, clock), settings.per_token)


def build(settings: ApiSettings, steps: Pipeline) -> web.Application:
    return ApiApp(steps, settings.max_body_bytes, settings.body_timeout_s).build()


async def serve(settings: ApiSettings) -> None:
    engine = CheckEngine(settings, f"api-{settings.port}", stamps=False)
    await engine.start()
    redis = connect(settings.redis_url, timeout_s=5.0)
    steps = pipeline(settings, redis, engine)
    front = None
    if settings.verify_port:  # first: the API port's /healthz then says both are up
        limits = HttpLimits(head_s=settings.body_timeout_s)
        front = HttpFront(VerifyApp(steps, settings.max_body_bytes), limits)
        await front.start(settings.host, settings.verify_port)
    runner = web.AppRunner(build(settings, steps), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    stop = stop_on_signals(engine.tiers)
    log.info("serving", extra=fields(port=settings.port, verify_port=settings.verify_port))
    await stop.wait()
    log.info("stopping")
    if front is not None:
        await front.stop(0.0, VERIFY_GRACE_S)
    await runner.cleanup()  # in-flight requests finish, verifies included
    await engine.stop()  # then leases are settled and buffered usage written back
    with contextlib.suppress(Exception):
        await redis.aclose()
    log.info("stopped")
