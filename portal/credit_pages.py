"""The portal's credit purchase, on portal/app.py's PortalApp (its sessions and pages).

POST /credits/buy        a Checkout (payment mode) for a credit pack of one of the signed-in
                         customer's own prepaid accounts; 303 to Stripe, which sends the
                         customer back to the dashboard (TOLLWAY_CREDITS_RETURN_URL). The
                         credits arrive with the payment's webhook (webhook/purchases.py).
POST /credits/recharge   the customer's auto-recharge: on or off, the mark, the pack
                         (tollway/recharge.py; portal/recharger.py charges)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web
from multidict import MultiDictProxy

from portal.sessions import Session
from tollway.errors import InvalidInput
from tollway.logs import fields
from tollway.recharge import choose
from tollway.tiers import Tier

if TYPE_CHECKING:
    from portal.app import PortalApp

log = logging.getLogger("tollway.portal")


class OwnForm(NamedTuple):
    session: Session
    form: MultiDictProxy[Any]
    account: str
    pack: str
    tier: Tier | None  # the account's, if it is the customer's own


class CreditPages:
    def __init__(self, app: PortalApp) -> None:
        self.app = app

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/credits/buy", self.buy)
        router.add_post("/credits/recharge", self.recharge)

    async def _own_form(self, request: web.Request) -> OwnForm:
        """A signed-in, CSRF-checked form naming an account and a pack: the account's tier if
        it is one of the customer's own accounts (None otherwise)."""
        app = self.app
        s = app._signed_in(request)
        form = await app.checked_form(request, s)
        account, pack = str(form.get("account", "")), str(form.get("pack", ""))
        table = app.tiers()
        own = {v.account: table.get(v.tier) for v in await app.accounts(s.customer)}
        return OwnForm(s, form, account, pack, own.get(account))

    async def buy(self, request: web.Request) -> web.Response:
        """POST /credits/buy: Checkout for a credit pack of one of the customer's own prepaid
        accounts (the account and pack are checked against what the customer holds)."""
        app = self.app
        s, _, account, pack, tier = await self._own_form(request)
        if tier is None or not tier.prepaid or tier.pack(pack) is None:
            return app.message(
                s, "Pick a pack", "Buy credits from your account's page.", 400, "/dashboard",
                "Your account",
            )  # fmt: skip
        email = await app.signups.email_of(s.customer) or ""
        return await app.to_checkout(
            request,
            s,
            lambda: app.backend.buy_credits(account, pack, email),
            ("/dashboard", "Your account"),
            "credits_checkout_failed",
            "credits_checkout",
            customer=s.customer,
            account=account,
            pack=pack,
        )

    async def recharge(self, request: web.Request) -> web.Response:
        """POST /credits/recharge: the customer's own prepaid account, on a tier that allows
        auto-recharge, and a pack it sells; back to the dashboard."""
        app = self.app
        s, form, account, pack, tier = await self._own_form(request)
        below = str(form.get("below", ""))
        if (
            tier is None
            or not tier.auto_recharge
            or tier.pack(pack) is None
            or not (below.isascii() and below.isdigit() and len(below) <= 13)
        ):
            return app.message(
                s, "Check the form", "Choose a pack and a whole number of credits.", 400,
                "/dashboard", "Your account",
            )  # fmt: skip
        try:
            await choose(app.credits.redis, account, form.get("enabled") == "1", int(below), pack)
        except InvalidInput as exc:
            return app.message(s, "That did not work", str(exc), 400, "/dashboard", "Your account")
        log.info("recharge_chosen", extra=fields(customer=s.customer, account=account))
        raise web.HTTPSeeOther("/dashboard", headers=app.headers)
