"""The portal's sign-in and sign-out pages, on portal/app.py's PortalApp (its sessions,
pages and clients).

GET  /signin           the sign-in form
POST /signin           email a one-time link per customer the address has (the same
                       answer, sent in the background, for any address)
GET  /signin/{token}   the emailed link: moves the token out of the URL into a short-lived
                       cookie, then to /signin/confirm; uses nothing (a mail scanner may
                       follow it)
GET  /signin/confirm   "Sign in as <address>?": a person sent someone else's link sees whose
                       account it is before anything happens
POST /signin/confirm   redeem the link: a fresh session, then the dashboard
POST /signout          end every session of the customer (portal/generations.py)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from portal.metrics import SIGNINS
from portal.signin import normalize
from tollway.logs import fields

if TYPE_CHECKING:
    from portal.app import PortalApp

log = logging.getLogger("tollway.portal")
SIGNIN_COOKIE = "tollway_signin"  # a sign-in link's token, between its link and its POST
MAX_ACCOUNTS = 5  # customers one address may sign in as, each with its own link


class SignInPages:
    def __init__(self, app: PortalApp) -> None:
        self.app = app

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/signin", self.signin_form)
        router.add_post("/signin", self.signin_ask)
        router.add_get("/signin/confirm", self.signin_confirm_page)
        router.add_post("/signin/confirm", self.signin_confirm)
        router.add_get("/signin/{token}", self.signin_link)
        router.add_post("/signout", self.signout)

    async def signin_form(self, request: web.Request) -> web.Response:
        return self.app.page(self.app.session(request), "signin.html", sent=False, error="")

    async def signin_ask(self, request: web.Request) -> web.Response:
        s = self.app.session(request)
        form = await self.app.checked_form(request, s)
        address = normalize(str(form.get("email", "")))
        if address is None:
            return self.app.page(
                s, "signin.html", 400, sent=False, error="That does not look like an email address."
            )
        if not await self.app.links.allowed(address, self.app.client(request)):
            SIGNINS.labels("throttled").inc()
            return self.app.message(
                s, "Too many sign-in links", "Wait 15 minutes, then ask again.", 429
            )
        # The same answer, as fast, whether or not the address is a customer's: the lookup
        # and the mail happen after it.
        self.app.background.run(self._mail_links(address), "signin_lookup")
        SIGNINS.labels("link_asked").inc()
        return self.app.page(s, "signin.html", sent=True, address=address, error="")

    async def _mail_links(self, address: str) -> None:
        """One message with a link per customer the address has (the person chooses)."""
        lines = []
        for customer in (await self.app.customers(address))[:MAX_ACCOUNTS]:
            token = await self.app.links.issue(customer, address)
            lines.append(f"Account {customer}: {self.app.public_url}/signin/{token}")
        if lines:
            body = "Sign in:\n\n" + "\n".join(lines) + "\n\nEach link works once, for 15 minutes.\n"
            self.app.mailer.send_later(address, "Your sign-in link", body, "signin")

    async def signin_link(self, request: web.Request) -> web.Response:
        self.app.link_to_confirm(request, SIGNIN_COOKIE, "/signin/confirm", self.app.links.ttl_s)

    async def signin_confirm_page(self, request: web.Request) -> web.Response:
        s = self.app.session(request)
        found = await self.app.links.peek(request.cookies.get(SIGNIN_COOKIE, ""))
        if found is None:
            return self._link_gone(s)
        customer, address = found
        return self.app.page(s, "signin_confirm.html", address=address, customer=customer)

    async def signin_confirm(self, request: web.Request) -> web.Response:
        s = self.app.session(request)
        await self.app.checked_form(request, s)
        customer = await self.app.links.redeem(request.cookies.get(SIGNIN_COOKIE, ""))
        if customer is None:
            SIGNINS.labels("link_gone").inc()
            return self._link_gone(s)
        signed_in = await self.app.signed_in_session(customer)
        response = web.HTTPSeeOther("/dashboard", headers=self.app.headers)
        self.app.set_session_cookie(response, signed_in)
        response.del_cookie(SIGNIN_COOKIE, path="/signin/confirm")
        SIGNINS.labels("signed_in").inc()
        log.info("signed_in", extra=fields(customer=customer))
        raise response

    def _link_gone(self, s: Any) -> web.Response:
        return self.app.message(
            s,
            "This link does not work",
            "It was used already, or it expired. Ask for a new one.",
            410,
            "/signin",
            "Sign in",
        )

    async def signout(self, request: web.Request) -> web.Response:
        s = self.app.session(request)
        await self.app.checked_form(request, s)
        if s.signed_in:
            await self.app.generations.end_all(s.customer)  # every device, a stolen cookie too
            log.info("signed_out", extra=fields(customer=s.customer))
        response = web.HTTPSeeOther("/", headers=self.app.headers)
        self.app.set_session_cookie(response, self.app.sessions.new())
        raise response
