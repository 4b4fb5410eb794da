"""The stand-in's own routes, which Stripe does not have: paying a Checkout session, triggering
subscription events, injecting faults, and reading back what happened.

    GET  /pay/{session}                              the Checkout page (card, Pay, Cancel)
    POST /pay/{session}                              the customer pays; 303 to success_url
                                                     (a card ending 0002 is declined: 402)
    POST /_standin/checkout/sessions/{id}/complete   the same, as JSON ({"card": ...})
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
from devkit.standin.pages import esc
from devkit.standin.payments import pay
from devkit.standin.validation import ParamError, stripe_error

CHECKOUT = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Checkout (Stripe stand-in)</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:1rem auto;padding:0 1rem;
color:#111}}label{{display:block;font-weight:600;margin-top:.5rem}}input,button{{font:inherit;
padding:.4rem .6rem;max-width:100%}}button{{margin-top:1rem}}
:focus-visible{{outline:3px solid #1a5fb4;outline-offset:2px}}</style></head><body><main>
<h1>Checkout</h1><p>Test mode: the Stripe stand-in. No card is charged.</p><ul>{items}</ul>
<form method="post" action="{action}"><label for="email">Email</label>
<input id="email" name="email" type="email" value="{email}" readonly>
<label for="card">Card number</label><input id="card" name="card" inputmode="numeric"
 autocomplete="cc-number" required value="4242 4242 4242 4242">
<button type="submit">{verb}</button></form>
<p><a href="{back}">Cancel</a></p></main></body></html>"""


class Control:
    def __init__(self, world: World, gateway: Gateway, delivery: Delivery) -> None:
        self.world = world
        self.gateway = gateway
        self.delivery = delivery

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/pay/{id}", self.checkout_page)
        r.add_post("/pay/{id}", self.pay)
        r.add_post("/_standin/checkout/sessions/{id}/complete", self.complete)
        r.add_post("/_standin/trigger", self.trigger)
        r.add_post("/_standin/faults", self.set_fault)
        r.add_delete("/_standin/faults", self.clear_faults)
        r.add_get("/_standin/events", self.list_events)
        r.add_get("/_standin/deliveries", self.list_deliveries)
        r.add_get("/_standin/meter_events", self.list_meter_events)
        r.add_get("/_standin/calls", self.list_calls)
        r.add_get("/_standin/healthz", self.healthz)

    async def checkout_page(self, request: web.Request) -> web.Response:
        try:
            cs = self.world.get("checkout.session", request.match_info["id"])
        except NotFound:
            raise web.HTTPNotFound(text="This Checkout session does not exist.") from None
        items = "".join(
            f"<li>{esc(self.world.get('price', i['price']).get('lookup_key') or i['price'])}</li>"
            for i in cs["line_items"]
        )
        back = cs.get("cancel_url") or "/"
        page = CHECKOUT.format(
            items=items,
            email=esc(cs.get("customer_email") or ""),
            action=f"/pay/{esc(cs['id'])}",
            back=esc(back),
            verb="Pay" if cs["mode"] == "payment" else "Pay and subscribe",
        )
        return web.Response(text=page, content_type="text/html")

    async def pay(self, request: web.Request) -> web.Response:
        form = await request.post()
        digits = "".join(c for c in str(form.get("card", "4242424242424242")) if c.isdigit())
        if not 12 <= len(digits) <= 19:
            return web.Response(status=400, text="Your card number is incomplete. Go back.")
        try:
            cs = self._complete(request.match_info["id"], digits)
        except NotFound:
            raise web.HTTPNotFound(text="This Checkout session does not exist.") from None
        except ParamError as exc:
            return web.Response(status=402, text=f"{exc} Go back and use another card.")
        raise web.HTTPSeeOther(cs["success_url"].replace("{CHECKOUT_SESSION_ID}", cs["id"]))

    async def complete(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return stripe_error(400, 'send JSON {"card": ...}, or nothing')
        card = str(body.get("card", "4242424242424242")) if isinstance(body, dict) else ""
        try:
            return web.json_response(self._complete(request.match_info["id"], card))
        except ParamError as exc:
            return stripe_error(402, str(exc), exc.param, exc.code, kind="card_error")

    def _complete(self, session_id: str, card: str) -> dict[str, Any]:
        """The customer pays the session: a subscription's first invoice, or a payment."""
        cs = self.world.get("checkout.session", session_id)
        if cs["mode"] == "payment":
            return pay(self.world, cs, card)
        return self.world.complete_checkout(session_id)

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

    async def list_calls(self, _: web.Request) -> web.Response:
        """API requests served, by path (what a bench counts)."""
        return web.json_response({"data": dict(self.gateway.calls)})

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})
