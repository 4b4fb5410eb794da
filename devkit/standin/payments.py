"""One-time payments: a payment-mode Checkout Session paid, its PaymentIntent and Charge, and
refunds of it, with the events Stripe sends for each (``checkout.session.completed`` with
``payment_status=paid``, ``payment_intent.succeeded``, ``charge.succeeded``,
``charge.refunded``, ``refund.created``), validated as Stripe validates them.

A Charge's metadata is its own (empty here): Stripe keeps a PaymentIntent's metadata on the
PaymentIntent, so a refund's handler reads it there. A card number ending in 0002 (Stripe's
"generic decline" test card) is declined: the session stays open and nothing is charged.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from devkit.standin.objects import World, new_id
from devkit.standin.validation import ParamError, check_metadata, check_params, read_params

DECLINED = "0002"  # 4000 0000 0000 0002: "Your card was declined."


def amount_of(world: World, cs: dict[str, Any]) -> tuple[int, str]:
    """What a payment-mode session charges: its one-time prices times their quantities."""
    total, currency = 0, "usd"
    for item in cs["line_items"]:
        price = world.get("price", item["price"])
        total += int(price["unit_amount"] or 0) * int(item.get("quantity", 1))
        currency = price["currency"]
    return total, currency


def check_line_items(world: World, mode: str, items: list[dict[str, Any]]) -> None:
    """Stripe's rule for payment mode: one-time prices only. (Its converse, a recurring price
    in subscription mode, is not checked: the stand-in's tests make subscriptions of bare
    prices.)"""
    kinds = {world.get("price", i["price"])["type"] for i in items}
    if mode == "payment" and "recurring" in kinds:
        raise ParamError(
            "You specified `payment` mode but passed a recurring price. Either switch to "
            "`subscription` mode or use only one-time prices.",
            "line_items",
        )


def card_method(world: World, card: str, customer: str | None) -> dict[str, Any]:
    """A card PaymentMethod (its number kept as its last four digits), attached to
    ``customer`` if given (saved for later use)."""
    return world.put(
        {
            "id": new_id("pm_"),
            "object": "payment_method",
            "type": "card",
            "card": {"last4": card[-4:], "brand": "visa"},
            "customer": customer,
            "created": int(world.now()),
            "livemode": False,
        }
    )


def payment_intent(
    world: World,
    amount: int,
    currency: str,
    customer: str,
    metadata: dict[str, str],
    **outcome: Any,
) -> dict[str, Any]:
    """A PaymentIntent, stored: one that succeeded unless ``outcome`` says otherwise
    (``status``, ``amount_received``, ``payment_method``, ``last_payment_error``)."""
    return world.put(
        {
            "id": new_id("pi_"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount,
            "currency": currency,
            "customer": customer,
            "payment_method": None,
            "status": "succeeded",
            "metadata": dict(metadata),
            "latest_charge": None,
            "last_payment_error": None,
            "created": int(world.now()),
            "livemode": False,
            **outcome,
        }
    )


def succeed(
    world: World, amount: int, currency: str, customer: str, method: str, metadata: dict[str, str]
) -> dict[str, Any]:
    """A PaymentIntent that succeeded, and its Charge; their events. Returns the intent."""
    now = int(world.now())
    pi = payment_intent(world, amount, currency, customer, metadata, payment_method=method)
    charge = world.put(
        {
            "id": new_id("ch_"),
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "currency": currency,
            "customer": customer,
            "payment_intent": pi["id"],
            "payment_method": method,
            "paid": True,
            "captured": True,
            "refunded": False,
            "status": "succeeded",
            "metadata": {},
            "created": now,
            "livemode": False,
        }
    )
    pi["latest_charge"] = charge["id"]
    world.emit("charge.succeeded", charge)
    world.emit("payment_intent.succeeded", pi)
    return pi


def pay(world: World, cs: dict[str, Any], card: str) -> dict[str, Any]:
    """The customer pays a payment-mode session with ``card``: a customer if it had none, a
    PaymentIntent and its Charge, and the events, in Stripe's order. Declined: nothing. With
    ``payment_intent_data[setup_future_usage]``, the card is saved on the customer."""
    if cs["status"] == "complete":
        return cs
    if card.endswith(DECLINED):
        raise ParamError("Your card was declined.", "card", "card_declined")
    customer = cs["customer"] or world.customer(cs["customer_email"])["id"]
    amount, currency = amount_of(world, cs)
    saved = customer if cs.get("setup_future_usage") else None
    method = card_method(world, card, saved)
    pi = succeed(world, amount, currency, customer, method["id"], cs["payment_intent_metadata"])
    cs.update(status="complete", payment_status="paid", customer=customer, payment_intent=pi["id"])
    world.emit("checkout.session.completed", cs)
    return cs


def refund(world: World, charge_id: str, amount: int | None) -> dict[str, Any]:
    """Refund ``amount`` (all that is left, if None) of a charge: charge.refunded carries the
    total refunded so far."""
    charge = world.get("charge", charge_id)
    left = charge["amount"] - charge["amount_refunded"]
    amount = left if amount is None else amount
    if amount <= 0 or amount > left:
        raise ParamError(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
            "amount",
        )
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount"]
    obj = world.put(
        {
            "id": new_id("re_"),
            "object": "refund",
            "amount": amount,
            "charge": charge_id,
            "payment_intent": charge["payment_intent"],
            "currency": charge["currency"],
            "status": "succeeded",
            "metadata": {},
            "created": int(world.now()),
        }
    )
    world.emit("refund.created", obj)
    world.emit("charge.refunded", charge)
    return obj


# Stripe's search query language, the one clause tollway sends: metadata['key']:'value'.
_METADATA_QUERY = re.compile(r"^metadata\['([A-Za-z0-9_]{1,40})'\]:'([^'\\]{1,500})'$")


class Refunds:
    """``POST /v1/refunds``: by charge or by PaymentIntent, all or part of what is left; and
    ``GET /v1/payment_intents/search`` (by one metadata value: what `tollway reconcile` asks)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v1/refunds", self.create)
        r.add_get("/v1/payment_intents/search", self.search)

    async def search(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(p, {"query", "limit", "page"}, {"query"})
        found = _METADATA_QUERY.match(str(p["query"]))
        if found is None:
            raise ParamError(
                "The stand-in searches by one metadata clause: metadata['key']:'value'", "query"
            )
        key, value = found.groups()
        data = [
            pi
            for pi in self.world.objects["payment_intent"].values()
            if pi["metadata"].get(key) == value
        ]
        body = {"object": "search_result", "data": data, "has_more": False, "next_page": None,
                "url": "/v1/payment_intents/search"}  # fmt: skip
        return web.json_response(body)

    async def create(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(p, {"charge", "payment_intent", "amount", "metadata", "reason"})
        check_metadata(p.get("metadata"))
        if bool(p.get("charge")) == bool(p.get("payment_intent")):
            raise ParamError("You must pass either `charge` or `payment_intent`.", "charge")
        charge = (
            p.get("charge")
            or self.world.get("payment_intent", p["payment_intent"])["latest_charge"]
        )
        if not charge:
            raise ParamError(
                "This PaymentIntent has no successful charge to refund.", "payment_intent"
            )
        raw = p.get("amount")
        if raw is not None and not str(raw).isdigit():
            raise ParamError("Invalid integer: amount", "amount")
        return web.json_response(refund(self.world, charge, int(raw) if raw is not None else None))
