"""Build the webhook service from settings and run it until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from tollway.audit import AuditLog
from tollway.credits import Credits
from tollway.dead_letters import DeadLetters
from tollway.eviction import EvictionWatch
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.logs import fields
from tollway.process import stop_on_signals
from tollway.redis_client import connect
from tollway.stripe_api import optional
from tollway.tier_source import TierSource
from webhook.app import WebhookApp
from webhook.checkout import Checkouts
from webhook.gate import Gate
from webhook.metrics import WebhookMetrics
from webhook.processor import Processor
from webhook.purchases import Purchases
from webhook.settings import WebhookSettings
from webhook.subscription_states import SubscriptionStates

log = logging.getLogger("tollway.webhook")


async def serve(settings: WebhookSettings) -> None:
    tiers = TierSource(settings.tiers)
    redis = connect(settings.redis_url, timeout_s=5.0)
    audit = AuditLog.configured(redis, settings)
    keys = KeyStore(redis, KeyHasher.configured(settings), audit)
    stripe_client = optional(settings, log, "no /checkout, no re-fetch")
    checkouts = Checkouts(redis, keys, settings.claim_ttl_s)
    purchases = Purchases(Credits(redis, audit), stripe_client)
    processor = Processor(
        keys,
        SubscriptionStates(redis, keys),
        checkouts,
        DeadLetters(redis),
        tiers,
        grace_s=int(settings.grace_days * 86400),
        stripe=stripe_client,
        refetch=settings.refetch,
        purchases=purchases,
    )
    metrics = WebhookMetrics()
    watch = asyncio.create_task(EvictionWatch(redis, metrics.may_evict, log).run())
    if not settings.secrets:
        log.warning("no_webhook_secret", extra=fields(effect="every delivery is refused"))
    app = WebhookApp(
        processor,
        checkouts,
        tiers,
        settings.secrets,
        settings.tolerance_s,
        settings.max_body_bytes,
        metrics,
        stripe_client,
        settings.success_url,
        settings.cancel_url,
        Gate(redis, settings.backend_token, settings.trusted_hops, settings.per_client),
        purchases,
        settings.credits_return_url,
    ).build()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    stop = stop_on_signals(tiers)
    log.info("serving", extra=fields(port=settings.port))
    await stop.wait()
    log.info("stopping")
    watch.cancel()
    await runner.cleanup()  # stops accepting, lets in-flight requests finish
    with contextlib.suppress(Exception):
        await redis.aclose()
    if stripe_client is not None:
        await stripe_client.aclose()
    log.info("stopped")
