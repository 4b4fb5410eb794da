"""The portal's routes: thin handlers over sessions, sign-in links and the pricing rows.

    GET  /                 pricing, from the tier table
    GET  /signin           the sign-in form
    POST /signin           email a one-time link (the same answer for any address)
    GET  /signin/{token}   redeem a link: a fresh signed-in session, then the dashboard
    GET  /dashboard        the signed-in customer's accounts: plan, use, limits, keys
    POST /signout          back to an anonymous session
    GET  /healthz, /static/...

Every form carries a CSRF token bound to the session; every answer sets the session cookie
(HttpOnly, SameSite=Lax, Secure on https) and headers that keep pages out of frames and
scripts from elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from portal.dashboard import card
from portal.directory import AccountsOf, Customers
from portal.mail import Mailer
from portal.pricing import plans
from portal.sessions import COOKIE, Session, Sessions
from portal.signin import SignInLinks, normalize
from tollway.logs import fields
from tollway.tiers import TierTable

log = logging.getLogger("tollway.portal")
HERE = Path(__file__).parent
HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # a sign-in link's token never leaves in a Referer
    "cache-control": "no-store",
}


class PortalApp:
    def __init__(
        self,
        tiers: Callable[[], TierTable],
        sessions: Sessions,
        links: SignInLinks,
        mailer: Mailer,
        customers: Customers,
        accounts: AccountsOf,
        public_url: str,
        secure_cookies: bool,
    ) -> None:
        self.tiers = tiers
        self.sessions = sessions
        self.links = links
        self.mailer = mailer
        self.customers = customers
        self.accounts = accounts
        self.public_url = public_url.rstrip("/")
        self.secure_cookies = secure_cookies
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
        )

    def build(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024)
        app.router.add_get("/", self.pricing)
        app.router.add_get("/signin", self.signin_form)
        app.router.add_post("/signin", self.signin_ask)
        app.router.add_get("/signin/{token}", self.signin_redeem)
        app.router.add_get("/dashboard", self.dashboard)
        app.router.add_post("/signout", self.signout)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_static("/static", HERE / "static")
        return app

    # -- plumbing ---------------------------------------------------------------------------
    def _session(self, request: web.Request) -> Session:
        return self.sessions.load(request.cookies.get(COOKIE)) or self.sessions.new()

    def page(self, s: Session, template: str, status: int = 200, **values: Any) -> web.Response:
        html = self.env.get_template(template).render(
            session=s, csrf=self.sessions.csrf(s), **values
        )
        response = web.Response(text=html, status=status, content_type="text/html", headers=HEADERS)
        self._set_cookie(response, s)
        return response

    def _set_cookie(self, response: web.StreamResponse, s: Session) -> None:
        response.set_cookie(COOKIE, self.sessions.dump(s), max_age=self.sessions.ttl_s,
                            httponly=True, samesite="Lax", secure=self.secure_cookies, path="/")  # fmt: skip

    def message(self, s: Session, heading: str, text: str, status: int = 200,
                link: str = "", link_text: str = "") -> web.Response:  # fmt: skip
        return self.page(s, "message.html", status, heading=heading, text=text, link=link,
                         link_text=link_text)  # fmt: skip

    # -- pages ------------------------------------------------------------------------------
    async def pricing(self, request: web.Request) -> web.Response:
        return self.page(self._session(request), "pricing.html", plans=plans(self.tiers()))

    async def signin_form(self, request: web.Request) -> web.Response:
        return self.page(self._session(request), "signin.html", sent=False, error="")

    async def signin_ask(self, request: web.Request) -> web.Response:
        s = self._session(request)
        form = await request.post()
        if not self.sessions.csrf_ok(s, str(form.get("csrf", ""))):
            return self.message(s, "Please try again", "This form expired or did not come "
                                "from this site. Reload the page and send it again.", 403)  # fmt: skip
        address = normalize(str(form.get("email", "")))
        if address is None:
            return self.page(s, "signin.html", 400, sent=False,
                             error="That does not look like an email address.")  # fmt: skip
        if not await self.links.allowed(address, request.remote or "?"):
            return self.message(
                s, "Too many sign-in links", "Wait 15 minutes, then ask again.", 429
            )
        # The same answer whether or not the address is a customer's.
        for customer in (await self.customers(address))[:1]:
            token = await self.links.issue(customer)
            link = f"{self.public_url}/signin/{token}"
            try:
                await self.mailer.send(address, "Your sign-in link", f"Sign in: {link}\n\n"
                                       "The link works once, for 15 minutes.\n")  # fmt: skip
            except OSError as exc:  # smtplib's errors are OSErrors: logged, never shown
                log.error("signin_mail_failed", extra=fields(customer=customer, error=str(exc)))
        return self.page(s, "signin.html", sent=True, address=address, error="")

    async def signin_redeem(self, request: web.Request) -> web.Response:
        customer = await self.links.redeem(request.match_info["token"])
        if customer is None:
            return self.message(self._session(request), "This link does not work",
                                "It was used already, or it expired. Ask for a new one.", 410,
                                "/signin", "Sign in")  # fmt: skip
        s = self.sessions.new(customer)  # a new session id: nothing from before carries over
        response = web.HTTPSeeOther("/dashboard", headers=HEADERS)  # the token leaves the URL
        self._set_cookie(response, s)
        log.info("signed_in", extra=fields(customer=customer))
        raise response

    async def dashboard(self, request: web.Request) -> web.Response:
        s = self._session(request)
        if not s.signed_in:
            raise web.HTTPSeeOther("/signin", headers=HEADERS)
        table = self.tiers()
        cards = [card(v, table) for v in await self.accounts(s.customer)]
        return self.page(s, "dashboard.html", cards=cards)

    async def signout(self, request: web.Request) -> web.Response:
        s = self._session(request)
        if not self.sessions.csrf_ok(s, str((await request.post()).get("csrf", ""))):
            return self.message(s, "Please try again", "This form expired or did not come "
                                "from this site. Reload the page and send it again.", 403)  # fmt: skip
        response = web.HTTPSeeOther("/", headers=HEADERS)
        self._set_cookie(response, self.sessions.new())
        raise response

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})
