"""Build the management API from settings and run it until SIGTERM."""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from api.app import ApiApp
from api.operations import Services
from api.settings import ApiSettings
from authz.engine import CheckEngine
from tollway.api_tokens import ApiTokens
from tollway.audit import AuditLog
from tollway.clock import WallClock
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.logs import fields
from tollway.process import stop_on_signals
from tollway.redis_client import connect

log = logging.getLogger("tollway.api")


def build(settings: ApiSettings, redis: object, engine: CheckEngine) -> web.Application:
    hasher = KeyHasher(settings.key_pepper.encode())
    clock = WallClock()
    audit = AuditLog.configured(redis, settings, clock)
    services = Services(KeyStore(redis, hasher, audit), audit, clock, engine)
    tokens = ApiTokens(redis, hasher, audit, clock)
    return ApiApp(
        services, tokens, settings.per_token, settings.max_body_bytes, settings.body_timeout_s
    ).build()


async def serve(settings: ApiSettings) -> None:
    engine = CheckEngine(settings, f"api-{settings.port}", stamps=False)
    await engine.start()
    redis = connect(settings.redis_url, timeout_s=5.0)
    runner = web.AppRunner(build(settings, redis, engine), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    stop = stop_on_signals(engine.tiers)
    log.info("serving", extra=fields(port=settings.port))
    await stop.wait()
    log.info("stopping")
    await runner.cleanup()  # in-flight requests finish, verifies included
    await engine.stop()  # then leases are settled and buffered usage written back
    with contextlib.suppress(Exception):
        await redis.aclose()
    log.info("stopped")
