"""Auto-recharge: a loop in the portal that charges a prepaid account's card on file
off-session when its balance falls below the customer's mark (tollway/recharge.py).

Each pass (one portal process an interval, as the alerts': ``recharge-pass``) looks at the
accounts with auto-recharge on. An account below its mark is charged once per crossing: the
crossing is named by the ledger's last top-up, and ``at:<top-up>`` is set (HSETNX) before
Stripe is asked, so processes, passes and a slow webhook agree on one charge. The
PaymentIntent (``off_session``, ``confirm``, the pack's price, the account and credits in its
metadata, an Idempotency-Key of the account and the crossing) credits the account when Stripe's
``payment_intent.succeeded`` arrives (webhook/purchases.py), under the payment: once.

A declined card (Stripe's ``card_error``, e.g. ``authentication_required``) credits nothing:
the outcome is kept (the dashboard says so), the customer is mailed, and the crossing is not
tried again (the customer buys a pack by hand, which is a new top-up). Another Stripe error
(Stripe away) lets go of the crossing, so the next pass tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import stripe

from portal.mail import Mailer
from portal.passes import every, owner
from tollway import schema
from tollway.credits import Credits, pack_metadata
from tollway.key_store import text
from tollway.logs import fields
from tollway.recharge import read
from tollway.scan import tags_by_suffix
from tollway.tiers import TierTable

log = logging.getLogger("tollway.portal.recharge")
EmailOf = Callable[[str], Awaitable[str | None]]


class Recharger:
    def __init__(
        self,
        redis: Any,
        stripe_client: Any,
        tiers: Callable[[], TierTable],
        mailer: Mailer,
        email_of: EmailOf,
    ) -> None:
        self.redis = redis
        self.stripe = stripe_client
        self.tiers = tiers
        self.mailer = mailer
        self.email_of = email_of
        self.credits = Credits(redis)
        self.owner = owner()

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """A pass every ``interval_s`` until ``stop``, by one portal process (portal/passes.py)."""
        await every(
            self.redis,
            schema.RECHARGE_PASS,
            self.owner,
            interval_s,
            stop,
            self.run_once,
            log,
            "recharge_pass_failed",
        )

    async def run_once(self) -> dict[str, str]:
        """One pass: each account with auto-recharge's outcome (charged, declined, ...)."""
        found = await tags_by_suffix(self.redis, ("recharge",), f"{schema.PREFIX}:{{*}}:recharge")
        return {a: await self.consider(a) for a in sorted(found["recharge"])}

    async def consider(self, account: str) -> str:
        """Charge ``account`` if it is below its mark and this crossing was not charged yet;
        what happened: off, above, already, charged, declined or failed."""
        chosen = await read(self.redis, account)
        tier_name, balance_raw = await self.redis.hmget(
            schema.account_state(account), "tier", "credits"
        )
        tier = self.tiers().get(text(tier_name)) if tier_name else None
        pack = tier.pack(chosen.pack) if tier is not None else None
        if not (chosen.enabled and chosen.card_on_file and tier and tier.auto_recharge and pack):
            return "off"
        if int(balance_raw or 0) >= chosen.below:
            return "above"
        crossing = await self.credits.last_top_up(account)
        name = schema.recharge(account)
        if not await self.redis.hsetnx(name, f"at:{crossing}", "charging"):
            return "already"
        params = {
            "amount": pack.price_amount,
            "currency": tier.currency,
            "customer": chosen.customer,
            "payment_method": chosen.payment_method,
            "off_session": True,
            "confirm": True,
            "metadata": pack_metadata(account, pack),
        }
        now = str(int(time.time()))
        try:
            pi = await self.stripe.v1.payment_intents.create_async(
                params, {"idempotency_key": f"recharge-{account}-{crossing}"}
            )
        except stripe.CardError as exc:
            error = str(exc.user_message or exc)[:300]
            await self.redis.hset(
                name, mapping={"status": "declined", "at": now, "error": error, f"at:{crossing}": "declined"}
            )  # fmt: skip
            log.warning("recharge_declined", extra=fields(account=account, error=error))
            await self._tell(account, chosen.customer, error)
            return "declined"
        except stripe.StripeError as exc:
            await self.redis.hdel(name, f"at:{crossing}")  # the next pass tries again
            log.error("recharge_failed", extra=fields(account=account, error=str(exc)))
            return "failed"
        await self.redis.hset(
            name, mapping={"status": "charged", "at": now, "error": "", f"at:{crossing}": pi.id,
                           "payment_intent": pi.id}
        )  # fmt: skip
        log.info("recharge_charged", extra=fields(account=account, payment_intent=pi.id))
        return "charged"

    async def _tell(self, account: str, customer: str, error: str) -> None:
        """Mail the customer that the card was declined (best effort: logged if it fails)."""
        try:
            address = await self.email_of(account) or await self.email_of(customer)
            if address is None:
                raise LookupError(f"no email address for {account}")
            await self.mailer.send(
                address,
                "Your auto-recharge did not go through",
                f"We could not charge your card for more credits: {error}\n"
                "Nothing was charged. Buy credits on your account's page to go on.\n",
            )
        except Exception as exc:
            log.error("recharge_mail_failed", extra=fields(account=account, error=str(exc)))
