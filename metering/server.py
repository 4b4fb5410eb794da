"""Run the metering daemon: drain every interval, serve /healthz and /metrics, stop on SIGTERM.

SIGHUP reloads the tier table (a bad file keeps the old one).

SIGTERM lets the running pass finish its current event, then exits; anything not yet acked is
still pending in Redis and is sent by the next daemon with the same identifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web

from metering.daemon import Drainer
from metering.ledger import Ledger
from metering.metrics import MeteringMetrics
from metering.probes import serve_probes
from metering.retry import RateLimiter, Retrier
from metering.settings import MeteringSettings
from metering.sinks import MeterEventSink, Sink
from metering.stream import StreamSink
from tollway.eviction import EvictionWatch
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.logs import fields
from tollway.process import stop_on_signals
from tollway.redis_client import connect
from tollway.stripe_api import Stripe
from tollway.tier_source import TierSource

log = logging.getLogger("tollway.metering")


async def serve(settings: MeteringSettings) -> None:
    tiers = TierSource(settings.tiers)
    # The drainer bounds each of its Redis steps itself (Drainer.redis_timeout_s).
    redis = connect(settings.redis_url, timeout_s=10.0, bound_each_reply=False)
    stripe_client = Stripe(settings, max_network_retries=0)  # we retry, honouring Retry-After
    metrics = MeteringMetrics()
    retrier = Retrier(
        RateLimiter(settings.rate_per_s), settings.attempts, on_retry=metrics.retries.inc
    )
    sink: Sink = MeterEventSink(stripe_client, retrier, settings.usage_window_s)
    if settings.sink == "stream":
        sink = StreamSink(stripe_client, retrier, settings.usage_window_s, fallback=sink)
    drainer = Drainer(
        KeyStore(redis, KeyHasher.configured(settings)),
        Ledger(redis, settings.usage_window_s, settings.window_slack_s, settings.refund_carry_s),
        sink,
        tiers,
        metrics,
        settings.max_age_warn_days * 86400,
        lock_ms=int(settings.send_lock_s * 1000),
        silence_s=max(settings.log_grace_s, 5),
    )
    last_ok = [time.time()]

    async def healthz(_: web.Request) -> web.Response:
        stale = time.time() - last_ok[0] > 3 * settings.interval_s + 30
        return web.json_response(
            {"status": "stale" if stale else "ok"}, status=503 if stale else 200
        )

    runner = await serve_probes(settings.host, settings.port, healthz)
    watch = asyncio.create_task(EvictionWatch(redis, metrics.may_evict, log).run())

    stop = stop_on_signals(tiers)
    log.info("serving", extra=fields(port=settings.port, interval_s=settings.interval_s))
    while not stop.is_set():
        try:
            with metrics.drain_seconds.time():
                result = await drainer.drain()
            last_ok[0] = time.time()
            if result.moved or result.sent:
                log.info(
                    "drained",
                    extra=fields(
                        moved=result.moved, sent={k.value: v for k, v in result.sent.items()}
                    ),
                )
        except Exception:  # Redis or Stripe trouble: everything is still in Redis; try again
            log.exception("drain_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.interval_s)
    log.info("stopping")
    watch.cancel()
    await runner.cleanup()
    await stripe_client.aclose()
    await redis.aclose()
    log.info("stopped")
