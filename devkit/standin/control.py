"""The stand-in's own routes, which Stripe does not have: paying a Checkout session, triggering
subscription events, injecting faults, and reading back what happened.

    GET  /pay/{session}                              the customer pays; 303 to success_url
    POST /_standin/checkout/sessions/{id}/complete   the same, as JSON
    POST /_standin/trigger    {"event": "...", "subscription"|"customer": ..., "price": ...}
    POST /_standin/faults     {"path": "/v1/...", "status": 500, "times": 1, "retry_after": 2,
                               "delay_ms": 0, "kind": "error"|"delay"|"reset"|"lost"};
                              DELETE clears them
    GET  /_standin/events, /_standin/deliveries, /_standin/meter_events, /_standin/healthz
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from devkit.standin.delivery import Delivery
from devkit.standin.gateway import Fault, Gateway
from devkit.standin.objects import NotFound, World
from devkit.standin.validation import stripe_error


class Control:
    def __init__(self, world: World, gateway: Gateway, delivery: Delivery) -> None:
        self.world = world
        self.gateway = gateway
        self.delivery = delivery

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/pay/{id}", self.pay)
        r.add_post("/_standin/checkout/sessions/{id}/complete", self.complete)
        r.add_post("/_standin/trigger", self.trigger)
        r.add_post("/_standin/faults", self.set_fault)
        r.add_delete("/_standin/faults", self.clear_faults)
        r.add_get("/_standin/events", self.list_events)
        r.add_get("/_standin/deliveries", self.list_deliveries)
        r.add_get("/_standin/meter_events", self.list_meter_events)
        r.add_get("/_standin/healthz", self.healthz)

    async def pay(self, request: web.Request) -> web.Response:
        cs = self.world.complete_checkout(request.match_info["id"])
        raise web.HTTPSeeOther(cs["success_url"].replace("{CHECKOUT_SESSION_ID}", cs["id"]))

    async def complete(self, request: web.Request) -> web.Response:
        return web.json_response(self.world.complete_checkout(request.match_info["id"]))

    def _actions(self, body: dict[str, Any]) -> dict[str, Callable[[], dict[str, Any]]]:
        w, sub, cus = self.world, body.get("subscription", ""), body.get("customer", "")
        return {
            "invoice.payment_failed": lambda: w.payment(sub, paid=False),
            "invoice.paid": lambda: w.payment(sub, paid=True),
            "customer.subscription.updated": lambda: (
                w.change_price(sub, body["price"])
                if body.get("price")
                else w.set_status(sub, body.get("status", "active"))
            ),
            "customer.subscription.deleted": lambda: w.set_status(sub, "canceled"),
            "customer.deleted": lambda: w.delete_customer(cus),
        }

    async def trigger(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            event = body["event"]
            actions = self._actions(body)
        except (ValueError, KeyError, TypeError, AttributeError):
            return stripe_error(400, 'send JSON {"event": ..., "subscription" or "customer": ...}')
        if event not in actions:
            return stripe_error(400, f"can trigger: {', '.join(actions)}")
        try:
            return web.json_response(actions[event]())
        except NotFound as exc:
            return stripe_error(404, str(exc), code="resource_missing")
        except KeyError as exc:
            return stripe_error(400, f"missing {exc}")

    async def set_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            fault = Fault(**body)
        except (ValueError, TypeError) as exc:
            return stripe_error(400, f"bad fault: {exc}")
        self.gateway.faults.append(fault)
        return web.json_response({"faults": len(self.gateway.faults)})

    async def clear_faults(self, _: web.Request) -> web.Response:
        self.gateway.faults.clear()
        return web.json_response({"faults": 0})

    async def list_events(self, _: web.Request) -> web.Response:
        return web.json_response({"data": self.world.events})

    async def list_deliveries(self, _: web.Request) -> web.Response:
        return web.json_response({"data": self.delivery.attempts})

    async def list_meter_events(self, _: web.Request) -> web.Response:
        return web.json_response({"data": self.world.meter_events})

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})
