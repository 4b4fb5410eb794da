"""Credit packs bought and refunded: Stripe's events to a prepaid account's balance, once.

A pack's Checkout Session (payment mode, made by ``POST /credits/checkout``) carries the
account and the credits in its metadata and its PaymentIntent's. When it is paid
(``checkout.session.completed`` with ``payment_status=paid``, or later
``checkout.session.async_payment_succeeded``), the account is credited under the payment's
id (``payment:<pi>``): however many times, and in whatever order, those events arrive, the
pack credits once.

``charge.refunded`` carries the total refunded so far: the credits taken back are that share
of the pack's (rounded down), under one reference per payment, so a second partial refund
takes back only what it adds and a late, older delivery takes back nothing. A refund may
come after the credits were spent: the balance then goes below zero, and the account's
requests are refused until it is topped up (the dashboard says so).
"""

from __future__ import annotations

import logging
from typing import Any

from tollway import schema
from tollway.credits import Credits, Movement, pack_metadata, purchase_ref, refund_ref
from tollway.errors import InvalidInput, NotFound
from tollway.key_store import text
from tollway.logs import fields
from tollway.recharge import save_card
from tollway.tier_readers import CreditPack
from tollway.tiers import Tier, TierTable
from webhook.events import CreditsPaid, PaymentRefunded, credit_metadata

log = logging.getLogger("tollway.webhook")


class Purchases:
    def __init__(self, credits: Credits, stripe: Any = None) -> None:
        self.credits = credits
        self.stripe = stripe  # to read a refunded charge's PaymentIntent (its metadata)

    async def pack_for(
        self, table: TierTable, account: str, pack: str
    ) -> tuple[Tier, CreditPack, str]:
        """The account's prepaid tier, the pack it may buy and its Stripe customer ("" for
        none: a free sign-up's). Raises NotFound (no such account) or InvalidInput."""
        if not schema.STRIPE_ID.match(account):
            raise InvalidInput("account must be an account id", field="account")
        tier_name, customer = await self.credits.redis.hmget(
            schema.account_state(account), "tier", "customer"
        )
        if not tier_name:
            raise NotFound(f"no account {account}")
        tier = table.get(text(tier_name))
        if tier is None or not tier.prepaid:
            raise InvalidInput(f"account {account} is not on a prepaid tier", field="account")
        found = tier.pack(pack)
        if found is None:
            names = ", ".join(p.name for p in tier.credit_packs) or "none"
            raise InvalidInput(f"no credit pack {pack[:64]!r} (packs: {names})", field="pack")
        return tier, found, text(customer or "")

    async def paid(self, intent: CreditsPaid) -> str:
        moved = await self.credits.move(
            intent.account,
            purchase_ref(intent.payment_intent, intent.session),
            intent.credits,
            Movement.PURCHASE,
            f"pack {intent.pack}" if intent.pack else "credit pack",
            f"stripe:{intent.event_id}",
        )
        if intent.session and intent.customer:
            await self._save_card(intent)
        if not moved.applied:
            return "duplicate"
        log.info(
            "credits_bought",
            extra=fields(account=intent.account, credits=moved.credits, balance=moved.balance),
        )
        return "applied"

    async def _save_card(self, intent: CreditsPaid) -> None:
        """The card a Checkout purchase saved on its customer (an ``auto_recharge`` tier's
        Checkout asks Stripe to: ``setup_future_usage``), for auto-recharge to charge. A card
        not saved (any other tier's purchase) leaves the card on file as it was."""
        if self.stripe is None or not intent.payment_intent:
            return
        pi = await self.stripe.v1.payment_intents.retrieve_async(intent.payment_intent)
        method_id = pi.payment_method if isinstance(pi.payment_method, str) else ""
        if not method_id:
            return
        method = (await self.stripe.v1.payment_methods.retrieve_async(method_id)).to_dict()
        if method.get("customer") == intent.customer:
            last4 = str((method.get("card") or {}).get("last4", ""))
            await save_card(self.credits.redis, intent.account, intent.customer, method_id, last4)

    async def refunded(self, intent: PaymentRefunded) -> str:
        bought = credit_metadata(intent.metadata)
        if bought is None and intent.payment_intent and self.stripe is not None:
            pi = await self.stripe.v1.payment_intents.retrieve_async(intent.payment_intent)
            bought = credit_metadata(pi.to_dict().get("metadata"))
        if bought is None or intent.amount <= 0:
            return "ignored"  # not a credit pack's payment (a subscription's invoice, say)
        account, credits, _ = bought
        share = min(credits, credits * intent.amount_refunded // intent.amount)
        if share <= 0:
            return "unchanged"
        moved = await self.credits.move(
            account,
            refund_ref(intent.payment_intent or intent.charge),
            -share,
            Movement.REFUND,
            f"charge {intent.charge} refunded",
            f"stripe:{intent.event_id}",
        )
        if not moved.applied:
            return "duplicate"
        log.info(
            "credits_refunded",
            extra=fields(account=account, credits=moved.credits, balance=moved.balance),
        )
        return "applied"


def checkout_params(
    account: str,
    pack: CreditPack,
    price: str,
    customer: str,
    email: str,
    return_url: str,
    save_card: bool = False,
) -> dict[str, Any]:
    """A payment-mode Checkout Session for one pack, its metadata on the session and on the
    PaymentIntent (what a refund's event leads back to); with ``save_card`` (an
    ``auto_recharge`` tier), the card is saved on the customer for charges off-session."""
    meta = pack_metadata(account, pack)
    pi_data: dict[str, Any] = {"metadata": meta}
    if save_card:
        pi_data["setup_future_usage"] = "off_session"
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [{"price": price, "quantity": 1}],
        "success_url": return_url,
        "cancel_url": return_url,
        "metadata": meta,
        "payment_intent_data": pi_data,
    }
    if customer.startswith("cus_"):
        params["customer"] = customer
    elif email:
        params["customer_email"] = email
    return params
