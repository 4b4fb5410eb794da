"""The portal's routes: thin handlers over sessions, sign-in links and the pricing rows.

    GET  /                 pricing, from the tier table
    GET  /signin, POST /signin, GET /signin/{token}, GET|POST /signin/confirm,
    POST /signout          signing in by an emailed link, and out (portal/signin_pages.py)
    POST /subscribe        a paid tier's Stripe Checkout (through the webhook service)
    POST /signup           a free tier: email a confirmation link (the same answer for any
                           address)
    GET  /signup/{token}   the emailed link: moves the token out of the URL into a short-lived
                           cookie, then to /signup/confirm
    GET  /signup/confirm   what it confirms, with a button (opening it uses nothing)
    POST /signup/confirm   confirm it: the first key, shown once, and a signed-in session
    GET  /welcome          after Checkout: the new key, shown once
    GET  /dashboard        the signed-in customer's accounts: plan, use, limits, keys
    POST /keys/create, /keys/rotate, /keys/revoke   on the customer's own keys only; a new
                           key is shown once, in the answer (never in a URL)
    POST /billing          Manage billing: a Stripe Customer Portal session for the signed-in
                           customer (card, plan, cancel), back to the dashboard after
    GET  /healthz, /static/...

Every form carries a CSRF token bound to the session; every answer sets the session cookie
(HttpOnly, SameSite=Lax, Secure on https) and headers that keep pages out of frames and
scripts from elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from portal.backend import Answer, Backend
from portal.billing import BillingPortal, BillingUnavailable
from portal.credit_pages import CreditPages
from portal.dashboard import AccountCard, card, with_charts, with_ledger
from portal.directory import AccountsOf, Customers
from portal.generations import Generations
from portal.mail import TIMEOUT_S as MAIL_TIMEOUT_S
from portal.mail import Mailer
from portal.own_keys import NotYours, OwnKeys
from portal.pricing import plans
from portal.sessions import COOKIE, Session, Sessions
from portal.signin import SignInLinks, normalize, token_or_dash
from portal.signin_pages import SignInPages
from portal.signup import FreeSignups
from portal.signup_pages import SignupPages
from tollway import recharge
from tollway.background import Background
from tollway.client_address import client_address
from tollway.credits import Credits
from tollway.errors import InvalidInput, NotFound
from tollway.last_resort import last_resort
from tollway.logs import fields
from tollway.throttle import Throttle
from tollway.tiers import Tier, TierTable
from tollway.usage_report import Row

Usage = Callable[[str, TierTable], Awaitable[dict[str, Row]]]  # a customer's usage rows

log = logging.getLogger("tollway.portal")
LEDGER_SHOWN = 10  # a prepaid account's latest ledger entries on the dashboard
HERE = Path(__file__).parent
SESSION = web.RequestKey("session", Session)  # the request's session (load_session)
# Where the portal's forms may lead: itself, and Stripe's Checkout and Customer Portal, which
# Subscribe and Manage billing redirect to (a browser applies form-action to the redirect).
STRIPE_PAGES = ("https://checkout.stripe.com", "https://billing.stripe.com")


def headers_for(form_targets: tuple[str, ...]) -> dict[str, str]:
    targets = " ".join(("'self'", *form_targets))
    return {
        "content-security-policy": (
            f"default-src 'self'; frame-ancestors 'none'; form-action {targets}"
        ),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",  # a sign-in link's token never leaves in a Referer
        "cache-control": "no-store",
    }


class RefusedPage(Exception):
    """Raised with the page that refuses a request (a form that expired or did not come from
    here, a form that does not fit); the portal's middleware answers with it."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


@web.middleware
async def answer_refusals(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except RefusedPage as refused:
        return refused.response


class PortalApp:
    def __init__(
        self,
        tiers: Callable[[], TierTable],
        sessions: Sessions,
        links: SignInLinks,
        mailer: Mailer,
        customers: Customers,
        accounts: AccountsOf,
        own: OwnKeys,
        usage: Usage,
        backend: Backend,
        signups: FreeSignups,
        billing: BillingPortal,
        public_url: str,
        api_url: str,
        secure_cookies: bool,
        generations: Generations,
        trusted_hops: int = 0,
        per_client: int = 30,
        form_targets: tuple[str, ...] = STRIPE_PAGES,
    ) -> None:
        self.tiers = tiers
        self.sessions = sessions
        self.links = links
        self.mailer = mailer
        self.customers = customers
        self.accounts = accounts
        self.own = own
        self.usage = usage
        self.backend = backend
        self.signups = signups
        self.billing = billing
        self.api_url = api_url.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.secure_cookies = secure_cookies
        self.generations = generations
        self.trusted_hops = trusted_hops  # proxies in front (tollway/client_address.py)
        # Checkout Sessions and key claims per client per 15 minutes: each may cost a call on
        # the operator's Stripe rate limit (webhook/gate.py).
        self.per_client = per_client
        self.throttle = Throttle(links.redis, 900)
        self.credits = Credits(links.redis)
        self.background = Background(log)
        self.headers = headers_for(form_targets)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
        )

    def _unavailable(self, request: web.Request) -> web.Response:
        """Redis, Stripe or the webhook service away, or a bug: a page that says so (503),
        keeping the session."""
        return self.message(
            self.session(request),
            "Something went wrong",
            "That did not work on our side. Try again in a minute.",
            503,
        )

    def build(self) -> web.Application:
        bug = last_resort(log, self._unavailable)
        app = web.Application(
            client_max_size=16 * 1024, middlewares=[bug, answer_refusals, self.load_session]
        )
        app.router.add_get("/", self.pricing)
        SignInPages(self).routes(app.router)
        app.router.add_post("/subscribe", self.subscribe)
        SignupPages(self).routes(app.router)
        app.router.add_get("/welcome", self.welcome)
        app.router.add_get("/dashboard", self.dashboard)
        app.router.add_post("/keys/{action:create|rotate|revoke}", self.key_action)
        app.router.add_post("/billing", self.manage_billing)
        CreditPages(self).routes(app.router)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_static("/static", HERE / "static")
        app.on_shutdown.append(self._finish_background)
        return app

    async def _finish_background(self, _: web.Application) -> None:
        """On shutdown, let what answered pages started (look-ups, mail) finish, for at most
        one mail's timeout: a link asked for just before a restart still goes out."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(MAIL_TIMEOUT_S):
                await self.background.idle()
                await self.mailer.sending.idle()

    # -- plumbing ---------------------------------------------------------------------------
    @web.middleware
    async def load_session(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The request's session, once: its cookie's, unless that is tampered with, expired,
        or from before the customer signed out (its generation is older); else a new one."""
        s = self.sessions.load(request.cookies.get(COOKIE))
        if (
            s is not None
            and s.signed_in
            and s.generation != await self.generations.current(s.customer)
        ):
            s = None
        request[SESSION] = s or self.sessions.new()
        return await handler(request)  # type: ignore[no-any-return]

    def session(self, request: web.Request) -> Session:
        return request.get(SESSION) or self.sessions.new()

    async def signed_in_session(self, customer: str) -> Session:
        """A fresh session for ``customer`` (a new sid: nothing from before carries over), in
        their current generation, so that an earlier sign-out does not end it at once."""
        return self.sessions.new(customer, await self.generations.current(customer))

    def client(self, request: web.Request) -> str:
        """The client's address, behind the configured proxies (for limits per client)."""
        return client_address(
            request.remote, request.headers.get("X-Forwarded-For"), self.trusted_hops
        )

    def page(self, s: Session, template: str, status: int = 200, **values: Any) -> web.Response:
        html = self.env.get_template(template).render(
            session=s, csrf=self.sessions.csrf(s), **values
        )
        response = web.Response(
            text=html, status=status, content_type="text/html", headers=self.headers
        )
        self.set_session_cookie(response, s)
        return response

    def link_to_confirm(self, request: web.Request, cookie: str, path: str, ttl_s: int) -> NoReturn:
        """An emailed link's landing: its token leaves the address bar for a cookie that only
        ``path`` (the page that confirms, and its POST) sees, for ``ttl_s``; then that page.
        Opening the link uses nothing (a mail scanner may follow it)."""
        response = web.HTTPSeeOther(path, headers=self.headers)
        response.set_cookie(
            cookie,
            token_or_dash(request.match_info["token"]),
            max_age=ttl_s,
            httponly=True,
            samesite="Lax",
            secure=self.secure_cookies,
            path=path,
        )
        raise response

    def set_session_cookie(self, response: web.StreamResponse, s: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.sessions.dump(s),
            max_age=self.sessions.ttl_s,
            httponly=True,
            samesite="Lax",
            secure=self.secure_cookies,
            path="/",
        )

    def message(
        self,
        s: Session,
        heading: str,
        text: str,
        status: int = 200,
        link: str = "",
        link_text: str = "",
    ) -> web.Response:
        return self.page(
            s, "message.html", status, heading=heading, text=text, link=link, link_text=link_text
        )

    # -- pages ------------------------------------------------------------------------------
    async def pricing(self, request: web.Request) -> web.Response:
        return self.page(self.session(request), "pricing.html", plans=plans(self.tiers()))

    def _signed_in(self, request: web.Request) -> Session:
        """The request's session; a visitor who is not signed in is sent to sign in."""
        s = self.session(request)
        if not s.signed_in:
            raise web.HTTPSeeOther("/signin", headers=self.headers)
        return s

    async def checked_form(self, request: web.Request, s: Session) -> MultiDictProxy[Any]:
        """The POSTed form, if it carries the session's CSRF token: every form goes through
        here. Otherwise RefusedPage with a 403 page."""
        form = await request.post()
        if not self.sessions.csrf_ok(s, str(form.get("csrf", ""))):
            raise RefusedPage(
                self.message(
                    s,
                    "Please try again",
                    "This form expired or did not "
                    "come from this site. Reload the page and send it "
                    "again.",
                    403,
                )
            )
        return form

    async def plan_form(
        self, request: web.Request, fits: Callable[[Tier], bool], which: str
    ) -> tuple[Session, Tier, str]:
        """The session, tier and address of a Subscribe or Sign-up form; RefusedPage if the tier
        does not ``fit`` or the address is not one."""
        s = self.session(request)
        form = await self.checked_form(request, s)
        tier = self.tiers().get(str(form.get("tier", "")))
        address = normalize(str(form.get("email", "")))
        if tier is None or not fits(tier) or address is None:
            raise RefusedPage(
                self.message(
                    s,
                    "Check the form",
                    f"Pick {which} on the pricing page and give a valid email address.",
                    400,
                    "/",
                    "Pricing",
                )
            )
        return s, tier, address

    async def subscribe(self, request: web.Request) -> web.Response:
        s, tier, address = await self.plan_form(request, lambda t: bool(t.stripe_prices), "a plan")
        return await self.to_checkout(
            request,
            s,
            lambda: self.backend.checkout(tier.name, address),
            ("/", "Pricing"),
            "checkout_failed",
            tier=tier.name,
        )

    async def to_checkout(
        self,
        request: web.Request,
        s: Session,
        start: Callable[[], Awaitable[Answer]],
        back: tuple[str, str],
        failed: str,
        started: str = "",
        **ids: str,
    ) -> web.Response:
        """303 to the Checkout Session the webhook service makes (``start``): throttled per
        client (each costs a call on the operator's Stripe rate limit); if it cannot, a page
        that says so, linking ``back`` (path, text), and the ``failed`` log event. ``started``:
        a log event for a Checkout started ("" for none)."""
        if not await self.throttle.hit("subscribe", self.client(request), self.per_client):
            return self.message(s, "Too many tries", "Wait 15 minutes, then try again.", 429)
        got = await start()
        url = got.body.get("url")
        if got.status != 200 or not isinstance(url, str) or not url.startswith("http"):
            log.error(failed, extra=fields(**ids, status=got.status, code=got.code))
            return self.message(
                s,
                "Checkout is unavailable",
                "We could not start Checkout. Try again in a minute.",
                502,
                *back,
            )
        if started:
            log.info(started, extra=fields(**ids))
        raise web.HTTPSeeOther(url, headers=self.headers)

    async def welcome(self, request: web.Request) -> web.Response:
        s = self.session(request)
        if not await self.throttle.hit("welcome", self.client(request), self.per_client):
            return self.message(s, "Too many tries", "Wait 15 minutes, then try again.", 429)
        got = await self.backend.claim(request.query.get("session_id", ""))
        if got.status == 200 and isinstance(got.body.get("api_key"), str):
            log.info("key_shown", extra=fields(key_id=got.body.get("key_id")))
            return self.show_key(
                s, "Your API key", got.body["api_key"], str(got.body.get("tier", ""))
            )
        if got.code in ("already_claimed", "claim_expired"):
            return self.message(
                s,
                "Your key was already shown",
                "For your safety a key is shown only once. Sign in to manage your keys.",
                410,
                "/signin",
                "Sign in",
            )
        if got.status in (404, 409):  # paid, and the key is on its way; or not paid yet
            return self.message(
                s,
                "Almost there",
                "Your payment is being confirmed. Reload this page in a few seconds.",
                409,
            )
        return self.message(
            s,
            "We could not show your key",
            "Reload this page, or sign in later to create a key.",
            502,
            "/signin",
            "Sign in",
        )

    def show_key(self, s: Session, heading: str, api_key: str, tier: str) -> web.Response:
        return self.page(
            s, "welcome.html", heading=heading, api_key=api_key, tier=tier, api_url=self.api_url
        )

    async def key_action(self, request: web.Request) -> web.Response:
        """POST /keys/{action}: create, rotate or revoke, signed in, CSRF-checked, own only."""
        s = self._signed_in(request)
        form = await self.checked_form(request, s)
        action = request.match_info["action"]
        try:
            if action == "create":
                plaintext, record = await self.own.create(s.customer, str(form.get("account", "")))
                log.info("key_created", extra=fields(customer=s.customer, key_id=record.key_id))
                return self.show_key(s, "Your new key", plaintext, record.tier)
            key_id = str(form.get("key_id", ""))
            if action == "rotate":
                plaintext, record = await self.own.rotate(
                    s.customer, key_id, str(form.get("overlap", ""))
                )
                log.info(
                    "key_rotated",
                    extra=fields(customer=s.customer, key_id=key_id, successor=record.key_id),
                )
                return self.show_key(s, "Your new key", plaintext, record.tier)
            if action == "revoke":
                await self.own.revoke(s.customer, key_id)
                log.info("key_revoked", extra=fields(customer=s.customer, key_id=key_id))
                raise web.HTTPSeeOther("/dashboard", headers=self.headers)
        except NotYours:
            log.warning("key_action_refused", extra=fields(customer=s.customer, action=action))
            return self.message(
                s,
                "Not your key",
                "That key is not one of yours.",
                403,
                "/dashboard",
                "Your account",
            )
        except (InvalidInput, NotFound) as exc:  # their messages are meant for the customer
            return self.message(s, "That did not work", str(exc), 400, "/dashboard", "Your account")
        raise web.HTTPNotFound()

    async def dashboard(self, request: web.Request) -> web.Response:
        s = self._signed_in(request)
        table = self.tiers()
        rows = await self.usage(s.customer, table)
        views = await self.accounts(s.customer)
        cards = [with_charts(card(v, table), rows) for v in views]
        cards = [await self._with_credits(c, table) if c.credits else c for c in cards]
        subscribed = any(v.plan.get("subscription") for v in views)
        return self.page(s, "dashboard.html", cards=cards, billing=subscribed)

    async def _with_credits(self, c: AccountCard, table: TierTable) -> AccountCard:
        """A prepaid account's card with its ledger and, if its tier allows, auto-recharge."""
        tier = table.get(c.tier)
        chosen = None
        if tier is not None and tier.auto_recharge:
            chosen = await recharge.read(self.credits.redis, c.account)
        return with_ledger(c, await self.credits.ledger(c.account, LEDGER_SHOWN), chosen)

    async def manage_billing(self, request: web.Request) -> web.Response:
        s = self._signed_in(request)
        await self.checked_form(request, s)
        try:
            url = await self.billing.open(s.customer, f"{self.public_url}/dashboard")
        except BillingUnavailable as exc:
            log.error("billing_portal_failed", extra=fields(customer=s.customer, error=str(exc)))
            return self.message(
                s,
                "Billing is unavailable",
                "We could not open billing. Try again in a minute.",
                502,
                "/dashboard",
                "Your account",
            )
        log.info("billing_opened", extra=fields(customer=s.customer))
        raise web.HTTPSeeOther(url, headers=self.headers)

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})
