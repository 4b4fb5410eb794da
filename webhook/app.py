"""The webhook service's HTTP layer: routes, and the one place exceptions become responses.

    POST /webhooks/stripe          signed Stripe events → key state
    POST /checkout                 {"tier", "email"} → a Stripe Checkout Session {"url", "id"}
    POST /credits/checkout         {"account", "pack", "email"} → a Checkout Session (payment
                                   mode) for a prepaid account's credit pack {"url", "id"}
    GET  /keys/claim?session_id=   the key for a completed checkout, once
                                   (both: for the portal and the operator's backend, or
                                   throttled per client: webhook/gate.py)
    GET  /healthz, GET /metrics

Every error is JSON ``{"error": {"code", "message"}}``. Bad input is a 4xx and changes nothing;
a failure to apply a good event is a 503, so that Stripe retries it. Which exception becomes
which response is webhook/errors.py's table, for every route.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import stripe
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tollway.credits import pack_lookup_key
from tollway.last_resort import last_resort
from tollway.logs import fields
from tollway.schema import STRIPE_ID
from tollway.tiers import TierTable
from webhook.checkout import Checkouts
from webhook.errors import CheckoutIncomplete, NoPrice, Route, UnknownSession, answer, error
from webhook.events import CheckoutCompleted, parse
from webhook.gate import Gate
from webhook.metrics import WebhookMetrics
from webhook.processor import Processor
from webhook.purchases import Purchases, checkout_params
from webhook.signature import Rejected, verify

log = logging.getLogger("tollway.webhook")
EMAIL = re.compile(r"^[^@\s]{1,200}@[^@\s]{1,200}$")


class WebhookApp:
    def __init__(
        self,
        processor: Processor,
        checkouts: Checkouts,
        tiers: Any,  # () -> TierTable
        secrets: list[str],
        tolerance_s: int,
        max_body: int,
        metrics: WebhookMetrics,
        stripe_client: Any,
        success_url: str,
        cancel_url: str,
        gate: Gate,
        purchases: Purchases | None = None,
        credits_return_url: str = "",
    ) -> None:
        self.processor = processor
        self.checkouts = checkouts
        self.tiers = tiers
        self.secrets = secrets
        self.tolerance_s = tolerance_s
        self.max_body = max_body
        self.metrics = metrics
        self.stripe = stripe_client
        self.success_url = success_url
        self.cancel_url = cancel_url
        self.gate = gate
        self.purchases = purchases
        self.credits_return_url = credits_return_url

    def build(self) -> web.Application:
        # A bug must still answer JSON and be logged; for webhooks a 5xx also makes Stripe retry.
        bug = last_resort(
            log, lambda _: error(500, "internal_error", "something went wrong on our side; retry")
        )
        app = web.Application(client_max_size=self.max_body, middlewares=[bug])
        app.router.add_post("/webhooks/stripe", self.stripe_webhook)
        app.router.add_post("/checkout", self.create_checkout)
        app.router.add_post("/credits/checkout", self.credits_checkout)
        app.router.add_get("/keys/claim", self.claim)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.prometheus)
        return app

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def prometheus(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"content-type": CONTENT_TYPE_LATEST})

    async def stripe_webhook(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_body:
            self.metrics.rejected.labels("payload_too_large").inc()
            return error(413, "payload_too_large", f"bodies are limited to {self.max_body} bytes")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.metrics.rejected.labels("payload_too_large").inc()
            return error(413, "payload_too_large", f"bodies are limited to {self.max_body} bytes")
        event: dict[str, Any] = {}
        try:
            event = verify(
                raw, request.headers.get("Stripe-Signature"), self.secrets, self.tolerance_s
            )
            with self.metrics.apply_seconds.time():
                outcome = await self.processor.handle(event)
        except Exception as exc:
            return self._event_error(event, exc)
        kind = str(event["type"])[:100]
        self.metrics.events.labels(kind if outcome != "ignored" else "other", outcome).inc()
        return web.json_response({"received": True, "outcome": outcome})

    def _event_error(self, event: dict[str, Any], exc: Exception) -> web.Response:
        """Count, log and answer a delivery that was refused or could not be applied."""
        row, response = answer(Route.EVENT, exc)
        kind = str(event.get("type", ""))[:100]
        ids = {"event_id": event.get("id"), "type": kind}
        if isinstance(exc, Rejected):
            self.metrics.rejected.labels(row.code).inc()
        elif row.refused:
            self.metrics.rejected.labels(row.code).inc()
            log.warning("event_rejected", extra=fields(**ids, error=str(exc)))
        else:  # Redis or Stripe trouble, or no tier: Stripe must retry, so never a 2xx
            self.metrics.failed.labels(kind).inc()
            log.error("event_failed", extra=fields(**ids, error=repr(exc)), exc_info=exc)
        return response

    async def _checkout_body(
        self, request: web.Request, wanted: str
    ) -> dict[str, Any] | web.Response:
        """A Checkout route's JSON object, if the gate lets the request through and it is one;
        else the answer that refuses it (its message names the ``wanted`` fields)."""
        refused = await self.gate.refuse(request, "checkout")
        if refused is not None:
            return refused
        usage = f"send a JSON object: {{{wanted}}}"
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError, web.HTTPRequestEntityTooLarge):
            return error(400, "invalid_json", usage)
        if not isinstance(body, dict):
            return error(400, "invalid_json", usage)
        return body

    async def create_checkout(self, request: web.Request) -> web.Response:
        body = await self._checkout_body(request, '"tier": ..., "email": ...')
        if isinstance(body, web.Response):
            return body
        table: TierTable = self.tiers()
        name, email = body.get("tier"), body.get("email")
        tier = table.get(name) if isinstance(name, str) else None
        if tier is None:
            return error(400, "unknown_tier", f"tiers: {', '.join(table.tiers)}")
        if not tier.stripe_prices:
            return error(400, "tier_not_for_sale", f"tier {tier.name!r} has no Stripe price")
        if email is not None and not (isinstance(email, str) and EMAIL.match(email)):
            return error(400, "invalid_email", "email must look like name@example.com")
        if self.stripe is None:
            return error(
                503, "stripe_not_configured", "set STRIPE_API_KEY or TOLLWAY_STRIPE_API_BASE"
            )
        try:
            price = await self._price_id(tier.stripe_prices[0])
            params: dict[str, Any] = {
                "mode": "subscription",
                "line_items": [{"price": price, "quantity": 1}],
                "success_url": self.success_url,
                "cancel_url": self.cancel_url,
                "metadata": {"tollway_tier": tier.name},
                "subscription_data": {"metadata": {"tollway_tier": tier.name}},
            }
            if email:
                params["customer_email"] = email
            session = await self.stripe.v1.checkout.sessions.create_async(params)
        except Exception as exc:
            log.error("checkout_failed", extra=fields(tier=tier.name, error=str(exc)))
            return answer(Route.CHECKOUT, exc)[1]
        return web.json_response({"url": session.url, "id": session.id})

    async def credits_checkout(self, request: web.Request) -> web.Response:
        wanted = '"account": ..., "pack": ..., "email": ...'
        body = await self._checkout_body(request, wanted)
        if isinstance(body, web.Response):
            return body
        account, pack, email = body.get("account"), body.get("pack"), body.get("email") or ""
        if not (isinstance(account, str) and isinstance(pack, str)):
            return error(400, "invalid_json", f"send a JSON object: {{{wanted}}}")
        if not (isinstance(email, str) and (email == "" or EMAIL.match(email))):
            return error(400, "invalid_email", "email must look like name@example.com")
        if self.stripe is None or self.purchases is None:
            return error(
                503, "stripe_not_configured", "set STRIPE_API_KEY or TOLLWAY_STRIPE_API_BASE"
            )
        try:
            tier, found, customer = await self.purchases.pack_for(self.tiers(), account, pack)
            price = await self._price_id(pack_lookup_key(tier.name, found))
            params = checkout_params(
                account, found, price, customer, email, self.credits_return_url, tier.auto_recharge
            )
            session = await self.stripe.v1.checkout.sessions.create_async(params)
        except Exception as exc:
            log.error("credits_checkout_failed", extra=fields(account=account, error=str(exc)))
            return answer(Route.CHECKOUT, exc)[1]
        return web.json_response({"url": session.url, "id": session.id})

    async def _price_id(self, price: str) -> str:
        """A tier may name a price id or a lookup key; Checkout needs the id."""
        if price.startswith("price_"):
            return price
        found = await self.stripe.v1.prices.list_async({"lookup_keys": [price], "active": True})
        if not found.data:
            raise NoPrice(f"no active price with lookup key {price!r}")
        return str(found.data[0].id)

    async def claim(self, request: web.Request) -> web.Response:
        session = request.query.get("session_id", "")
        if not (session.startswith("cs_") and STRIPE_ID.match(session)):
            return error(
                400, "invalid_session_id", "session_id must be a Checkout Session id (cs_...)"
            )
        refused = await self.gate.refuse(request, "claim")
        if refused is not None:
            return refused
        try:
            got = await self.checkouts.claim(session)
            if got is None:
                got = await self._issue_from_stripe(session)
        except Exception as exc:
            return answer(Route.CLAIM, exc)[1]
        headers = {"cache-control": "no-store"}
        body = {
            "api_key": got.api_key,
            "key_id": got.key_id,
            "tier": got.tier,
            "customer": got.customer,
        }
        return web.json_response(body, headers=headers)

    async def _issue_from_stripe(self, session_id: str) -> Any:
        """A claim that beat the webhook: ask Stripe about the session and issue the key here."""
        if self.stripe is None:
            raise UnknownSession(f"no key issued for {session_id} yet")
        if await self.gate.known_unknown(session_id):
            raise UnknownSession(f"no checkout session {session_id}")
        try:
            cs = (await self.stripe.v1.checkout.sessions.retrieve_async(session_id)).to_dict()
        except stripe.InvalidRequestError:
            await self.gate.remember_unknown(session_id)  # one Stripe call, not one per claim
            raise UnknownSession(f"no checkout session {session_id}") from None
        status, paid = cs.get("status"), cs.get("payment_status")
        if status != "complete" or paid not in ("paid", "no_payment_required"):
            raise CheckoutIncomplete(f"checkout {session_id} is {status}/{paid}")
        event = {
            "id": "evt_claim",
            "type": "checkout.session.completed",
            "created": 0,
            "data": {"object": cs},
        }
        intent = parse(event)  # the same parsing and checks as the webhook's
        if not isinstance(intent, CheckoutCompleted):
            raise CheckoutIncomplete(f"checkout {session_id} is not a subscription checkout")
        tier, state = await self.processor.resolve_tier(intent.subscription, intent.tier_hint)
        await self.checkouts.issue(
            session_id, intent.customer, intent.subscription, tier, intent.payment_status, state
        )
        got = await self.checkouts.claim(session_id)
        if got is None:
            raise UnknownSession(f"no key issued for {session_id}")
        return got
