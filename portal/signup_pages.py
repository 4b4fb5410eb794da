"""The portal's free sign-up pages, on portal/app.py's PortalApp (its sessions, pages and
mail).

POST /signup           email a confirmation link for a free tier (throttled per address and IP)
GET  /signup/{token}   the emailed link: moves the token out of the URL into a short-lived
                       cookie, then to /signup/confirm; uses nothing (a mail scanner may
                       follow it)
GET  /signup/confirm   what the link confirms, and a button
POST /signup/confirm   create the customer and their key (or sign an existing one in), once
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from portal.sessions import Session
from tollway.errors import InvalidInput
from tollway.logs import fields

if TYPE_CHECKING:
    from portal.app import PortalApp

log = logging.getLogger("tollway.portal")
SIGNUP_COOKIE = "tollway_signup"  # a free sign-up's token, between its link and the confirmation


class SignupPages:
    def __init__(self, app: PortalApp) -> None:
        self.app = app

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/signup", self.signup_ask)
        router.add_get("/signup/confirm", self.signup_confirm_page)
        router.add_post("/signup/confirm", self.signup_confirm)
        router.add_get("/signup/{token}", self.signup_link)

    async def signup_ask(self, request: web.Request) -> web.Response:
        s, tier, address = await self.app.plan_form(request, lambda t: t.free_signup, "a free plan")
        if not await self.app.links.allowed(address, self.app.client(request)):
            return self.app.message(s, "Too many links", "Wait 15 minutes, then ask again.", 429)
        token = await self.app.signups.ask(address, tier.name)
        link = f"{self.app.public_url}/signup/{token}"
        self.app.mailer.send_later(
            address,
            f"Confirm your {tier.name} plan",
            f"Confirm and get your API key: {link}\n\nThe link works once, for 15 minutes.\n",
            "signup",
        )
        return self.app.message(
            s,
            "Check your inbox",
            f"We sent a confirmation link to {address}. It works once, for 15 minutes.",
        )

    async def signup_link(self, request: web.Request) -> web.Response:
        """The key is shown on the page that confirms, so the token leaves the address bar
        first (as a sign-in link's does): it rides in a cookie only /signup/confirm sees."""
        self.app.link_to_confirm(request, SIGNUP_COOKIE, "/signup/confirm", 900)

    async def signup_confirm_page(self, request: web.Request) -> web.Response:
        """What the link confirms, and a button: opening it (a mail scanner, say) uses nothing."""
        s = self.app.session(request)
        found = await self.app.signups.peek(request.cookies.get(SIGNUP_COOKIE, ""))
        if found is None:
            return self._signup_gone(s)
        address, tier = found
        return self.app.page(s, "signup_confirm.html", address=address, tier=tier)

    async def signup_confirm(self, request: web.Request) -> web.Response:
        await self.app.checked_form(request, self.app.session(request))
        token = request.cookies.get(SIGNUP_COOKIE, "")
        try:
            done = await self.app.signups.confirm(token, self.app.tiers())
        except InvalidInput as exc:  # its message is meant for the customer
            return self.app.message(
                self.app.session(request), "Sign-up is closed", str(exc), 410, "/", "Pricing"
            )
        if done is None:
            return self._signup_gone(self.app.session(request))
        s = await self.app.signed_in_session(done.customer)  # the link proves the address
        log.info("signed_up", extra=fields(customer=done.customer, new=bool(done.api_key)))
        if done.record is None:
            response = web.HTTPSeeOther("/dashboard", headers=self.app.headers)
            self.app.set_session_cookie(response, s)
            response.del_cookie(SIGNUP_COOKIE, path="/signup/confirm")
            raise response
        shown = self.app.show_key(s, "Your API key", done.api_key, done.record.tier)
        shown.del_cookie(SIGNUP_COOKIE, path="/signup/confirm")
        return shown

    def _signup_gone(self, s: Session) -> web.Response:
        return self.app.message(
            s,
            "This link does not work",
            "It was used already, or it expired. Sign up again.",
            410,
            "/",
            "Pricing",
        )
