"""Stripe's Customer Portal, as the stand-in plays it: ``POST /v1/billing_portal/sessions``
makes a session whose ``url`` is a page here, where the customer updates the card, switches
plans or cancels. Each action changes the world, which sends the webhooks Stripe would:

    update the card   customer.updated; a past_due subscription is paid: invoice.paid and
                      customer.subscription.updated (active)
    switch plans      customer.subscription.updated, with the new price on the first item
    cancel at period end  customer.subscription.updated with ``cancel_at_period_end`` and
                      ``cancel_at`` (Stripe's default ``subscription_cancel.mode``); renew
                      takes it back (the same event, both cleared)
    cancel now        customer.subscription.deleted (``mode = immediately``)

The pages are plain HTML forms (no script), with labels, for the browser test.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from devkit.standin.objects import NotFound, World
from devkit.standin.pages import esc
from devkit.standin.validation import ParamError, check_len, check_params, read_params

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Manage billing (Stripe stand-in)</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem;
color:#111}}form{{margin:.5rem 0 1rem}}button,input,select{{font:inherit;padding:.3rem .6rem}}
:focus-visible{{outline:3px solid #1a5fb4;outline-offset:2px}}section{{border:1px solid #999;
padding:.5rem 1rem;margin:1rem 0}}</style></head><body><main>
<h1>Manage billing</h1><p>{email} · test mode (Stripe stand-in)</p>{notice}{body}
<p><a href="{back}">Return to {back_host}</a></p></main></body></html>"""


class CustomerPortal:
    def __init__(self, world: World) -> None:
        self.world = world

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v1/billing_portal/sessions", self.create_session)
        r.add_get("/billing/{id}", self.page)
        r.add_post("/billing/{id}/{action:card|switch|cancel|cancel_at_end|renew}", self.act)

    async def create_session(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(
            p,
            {"customer", "return_url", "configuration", "flow_data", "locale", "on_behalf_of"},
            {"customer"},
        )
        check_len(p, "return_url", 5000)
        return web.json_response(self.world.portal_session(p["customer"], p.get("return_url")))

    def _session(self, request: web.Request) -> dict[str, Any]:
        try:
            return self.world.get("billing_portal.session", request.match_info["id"])
        except NotFound:
            raise web.HTTPNotFound(text="This billing session does not exist.") from None

    def _prices(self) -> list[dict[str, Any]]:
        """The plans a customer may switch to: active, recurring, flat (licensed) prices."""
        return [
            p
            for p in self.world.objects["price"].values()
            if p["active"] and p["recurring"] and p["recurring"]["usage_type"] == "licensed"
        ]

    async def page(self, request: web.Request, notice: str = "") -> web.Response:
        bps = self._session(request)
        cus = self.world.get("customer", bps["customer"])
        base = f"/billing/{esc(bps['id'])}"
        parts = []
        card = cus.get("invoice_settings", {}).get("last4")
        parts.append(f"""<section aria-labelledby="card-h"><h2 id="card-h">Payment method</h2>
<p>{"Card ending " + esc(card) if card else "The card used at Checkout."}</p>
<form method="post" action="{base}/card"><label for="card">Card number</label>
<input id="card" name="card" inputmode="numeric" autocomplete="cc-number" required
 pattern="[0-9 ]{{12,23}}" value="4242 4242 4242 4242"> <button type="submit">Update card</button></form></section>""")
        for sub in self.world.subscriptions_of(cus["id"]):
            price = sub["items"]["data"][0]["price"]
            sid = esc(sub["id"])
            parts.append(f"""<section aria-labelledby="h-{sid}"><h2 id="h-{sid}">Subscription:
{esc(price.get("lookup_key") or price["id"])}</h2><p>Status: <strong class="sub-status">{esc(sub["status"])}</strong></p>""")
            if sub["status"] != "canceled":
                options = "".join(
                    f'<option value="{esc(p["id"])}"{" selected" if p["id"] == price["id"] else ""}>'
                    f"{esc(p['lookup_key'] or p['id'])}</option>"
                    for p in self._prices()
                )
                parts.append(f"""<form method="post" action="{base}/switch">
<input type="hidden" name="subscription" value="{sid}"><label for="price-{sid}">Plan</label>
<select id="price-{sid}" name="price">{options}</select> <button type="submit">Switch plan</button></form>""")
                if sub["cancel_at_period_end"]:
                    parts.append(f"""<p class="sub-ends">Cancels at the end of the period.</p>
<form method="post" action="{base}/renew"><input type="hidden" name="subscription" value="{sid}">
<button type="submit">Renew subscription</button></form>""")
                else:
                    parts.append(f"""<form method="post" action="{base}/cancel_at_end">
<input type="hidden" name="subscription" value="{sid}">
<button type="submit">Cancel at period end</button></form>""")
                parts.append(f"""<form method="post" action="{base}/cancel">
<input type="hidden" name="subscription" value="{sid}">
<button type="submit">Cancel subscription now</button></form>""")
            parts.append("</section>")
        back = bps["return_url"] or "/"
        text = PAGE.format(
            email=esc(cus.get("email") or cus["id"]),
            body="".join(parts),
            notice=f'<p role="status">{esc(notice)}</p>' if notice else "",
            back=esc(back),
            back_host=esc(back.split("/")[2] if "//" in back else back),
        )
        return web.Response(text=text, content_type="text/html")

    async def act(self, request: web.Request) -> web.Response:
        bps = self._session(request)
        form = await request.post()
        action = request.match_info["action"]
        try:
            if action == "card":
                digits = "".join(c for c in str(form.get("card", "")) if c.isdigit())
                if not 12 <= len(digits) <= 19:
                    raise ParamError("Your card number is incomplete.", "card")
                self.world.update_card(bps["customer"], digits[-4:])
                return await self.page(request, "Your card was updated.")
            sub = self.world.get("subscription", str(form.get("subscription", "")))
            if sub["customer"] != bps["customer"] or sub["status"] == "canceled":
                raise ParamError("That subscription cannot be changed here.", "subscription")
            if action == "switch":
                price = str(form.get("price", ""))
                if price not in {p["id"] for p in self._prices()}:
                    raise ParamError("Pick one of the plans listed.", "price")
                self.world.change_price(sub["id"], price)
                return await self.page(request, "Your plan was changed.")
            if action in ("cancel_at_end", "renew"):
                at_end = action == "cancel_at_end"
                self.world.cancel_at_period_end(sub["id"], at_end)
                return await self.page(
                    request,
                    "Your subscription will be canceled at the end of the period."
                    if at_end
                    else "Your subscription was renewed.",
                )
            self.world.set_status(sub["id"], "canceled")
            return await self.page(request, "Your subscription was canceled.")
        except (ParamError, NotFound) as exc:
            return web.Response(status=400, text=f"{exc} Go back and try again.")
