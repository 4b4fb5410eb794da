"""Build the portal from settings and run it until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import start_http_server

from portal.alerter import Alerter
from portal.app import STRIPE_PAGES, PortalApp
from portal.backend import Backend
from portal.billing import BillingPortal
from portal.directory import accounts_of, customers_with_keys, email_of
from portal.expirer import Expirer
from portal.generations import Generations
from portal.mail import Mailer
from portal.own_keys import OwnKeys
from portal.recharger import Recharger
from portal.sessions import Sessions
from portal.settings import PortalSettings
from portal.signin import SignInLinks
from portal.signup import FreeSignups
from tollway.audit import AuditLog
from tollway.clock import WallClock
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.lifecycle import Lifecycle
from tollway.logs import fields
from tollway.process import stop_on_signals
from tollway.redis_client import connect
from tollway.stripe_api import optional
from tollway.tier_source import TierSource
from tollway.usage_report import customer_windows

log = logging.getLogger("tollway.portal")


def form_targets(api_base: str, more: str) -> tuple[str, ...]:
    """Stripe's page origins, the API base's when one is set (the stand-in serves its
    Checkout and Customer Portal pages there), and the operator's own."""
    out = [*STRIPE_PAGES, *more.split()]
    if api_base:
        parts = urlsplit(api_base)
        out.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(out)


async def serve(settings: PortalSettings) -> None:
    tiers = TierSource(settings.tiers)
    redis = connect(settings.redis_url, timeout_s=5.0)
    keys = KeyStore(redis, KeyHasher.configured(settings), AuditLog.configured(redis, settings))
    stripe_client = optional(settings, log, "no customer can sign in")

    backend = Backend(settings.webhook_url, settings.backend_token)
    mailer = Mailer(settings.smtp_host, settings.smtp_port, settings.mail_from)
    lifecycle = Lifecycle(keys, WallClock())
    signups = FreeSignups(redis, lifecycle, settings.signin_ttl_s)
    app = PortalApp(
        tiers,
        Sessions(settings.session_secrets, settings.session_ttl_s),
        SignInLinks(
            redis, settings.signin_ttl_s, settings.signin_per_address, settings.signin_per_ip
        ),
        mailer,
        customers_with_keys(stripe_client, keys, signups),
        accounts_of(keys),
        OwnKeys(lifecycle),
        lambda customer, table: customer_windows(keys, customer, table),
        backend,
        signups,
        BillingPortal(stripe_client),
        settings.public_url,
        settings.api_url,
        settings.secure_cookies,
        Generations(redis),
        settings.trusted_hops,
        settings.per_client,
        form_targets(settings.stripe_api_base, settings.stripe_pages),
    ).build()
    runner = web.AppRunner(app, access_log=None)  # no sign-in token in any log
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    metrics = None
    if settings.metrics_port:
        metrics, _ = start_http_server(settings.metrics_port, settings.host)
    stop = stop_on_signals(tiers)
    alerts = None
    if settings.alert_interval_s > 0:
        alerter = Alerter(
            keys,
            tiers,
            mailer,
            email_of(stripe_client, signups),
            settings.alert_webhook_url,
            settings.alert_webhook_secret,
            settings.alert_attempts,
            settings.alert_retry_s,
        )
        alerts = asyncio.create_task(alerter.run(settings.alert_interval_s, stop))
    recharges = None
    if settings.recharge_interval_s > 0 and stripe_client is not None:
        recharger = Recharger(redis, stripe_client, tiers, mailer, email_of(stripe_client, signups))
        recharges = asyncio.create_task(recharger.run(settings.recharge_interval_s, stop))
    # Credit expiry, on the auto-recharge's interval (it needs no Stripe).
    expiry = None
    if settings.recharge_interval_s > 0:
        expirer = Expirer(redis, tiers)
        expiry = asyncio.create_task(expirer.run(settings.recharge_interval_s, stop))
    log.info("serving", extra=fields(port=settings.port))
    await stop.wait()
    if expiry is not None:
        await expiry
    if alerts is not None:
        await alerts
    if recharges is not None:
        await recharges
    await runner.cleanup()
    if metrics is not None:
        metrics.shutdown()
    await backend.close()
    if stripe_client is not None:
        await stripe_client.aclose()
    await redis.aclose()
    log.info("stopped")
