"""``POST /v1/payment_intents``: charging a saved card off-session, as an auto-recharge does,
validated as Stripe validates it (amount, currency, the customer and the card saved on it,
``off_session`` only with ``confirm``).

A card ending 3184 (Stripe's test card 4000 0027 6000 3184, which always asks the customer
to authenticate) succeeds at Checkout, where the customer is there to authenticate, and is
declined off-session: 402 ``card_error`` ``authentication_required``, the PaymentIntent left
``requires_payment_method``, ``payment_intent.payment_failed`` sent. Any other saved card
succeeds: the PaymentIntent, its Charge, ``charge.succeeded`` and
``payment_intent.succeeded``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from devkit.standin.objects import World
from devkit.standin.payments import payment_intent, succeed
from devkit.standin.validation import (
    ParamError,
    check_metadata,
    check_params,
    read_params,
)

NEEDS_AUTHENTICATION = "3184"
MINIMUM = 50  # Stripe's smallest charge in usd: $0.50


class Intents:
    def __init__(self, world: World) -> None:
        self.world = world

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v1/payment_intents", self.create)

    async def create(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(
            p,
            {"amount", "currency", "customer", "payment_method", "off_session", "confirm",
             "metadata", "description"},
            {"amount", "currency"},
        )  # fmt: skip
        if not str(p["amount"]).isdigit():
            raise ParamError("Invalid integer: amount", "amount")
        amount = int(p["amount"])
        if amount < MINIMUM:
            raise ParamError("Amount must be at least $0.50 usd", "amount", "amount_too_small")
        metadata = check_metadata(p.get("metadata"))
        off_session = str(p.get("off_session", "false")) == "true"
        if off_session and str(p.get("confirm", "false")) != "true":
            raise ParamError("off_session can only be used when confirm=true", "off_session")
        customer = str(p.get("customer") or "")
        if customer:
            self.world.get("customer", customer)
        method = self.world.get("payment_method", str(p.get("payment_method") or ""))
        if method["customer"] != customer or not customer:
            raise ParamError(
                "The provided PaymentMethod does not belong to the Customer: attach it first.",
                "payment_method",
            )
        currency = str(p["currency"])
        if off_session and method["card"]["last4"] == NEEDS_AUTHENTICATION:
            return self._declined(amount, currency, customer, method["id"], metadata)
        pi = succeed(self.world, amount, currency, customer, method["id"], metadata)
        return web.json_response(pi)

    def _declined(
        self, amount: int, currency: str, customer: str, method: str, metadata: dict[str, str]
    ) -> web.Response:
        error = {
            "code": "authentication_required",
            "type": "card_error",
            "message": "Your card requires authentication to complete this payment.",
        }
        pi = payment_intent(
            self.world,
            amount,
            currency,
            customer,
            metadata,
            amount_received=0,
            status="requires_payment_method",
            last_payment_error={**error, "payment_method": {"id": method}},
        )
        self.world.emit("payment_intent.payment_failed", pi)
        body: dict[str, Any] = {"error": {**error, "payment_intent": pi}}
        return web.json_response(body, status=402)
