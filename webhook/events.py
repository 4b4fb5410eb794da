"""Read a verified Stripe event into a typed intent, accepting both payload shapes (pure).

Before API version 2025-03-31.basil, invoices carry ``subscription`` and subscriptions carry
``current_period_start/_end``. From basil on, invoices carry
``parent.subscription_details.subscription`` and the periods live on the subscription items.

``parse(event)`` returns an intent, or ``Unhandled`` for event types tollway ignores. It
raises ``MalformedEvent`` when a handled event has fields of the wrong type or shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollway.credits import ACCOUNT_META, CREDITS_META, PACK_META
from tollway.errors import InvalidInput
from tollway.schema import STRIPE_ID


class MalformedEvent(InvalidInput):
    """A handled event type whose payload does not have the shape Stripe sends."""


@dataclass(frozen=True)
class Event:
    event_id: str
    created: int


@dataclass(frozen=True)
class SubscriptionChanged(Event):
    subscription: str
    customer: str
    status: str  # Stripe's subscription status
    prices: tuple[str, ...]  # price ids and lookup keys of the items
    period_start: int
    period_end: int
    deleted: bool = False
    # When a cancellation the customer asked for takes effect (Stripe's cancel_at, or the
    # period's end with cancel_at_period_end); 0: none pending. Keys work until then.
    cancel_at: int = 0


@dataclass(frozen=True)
class InvoiceSettled(Event):
    subscription: str
    customer: str
    paid: bool  # True: paid/payment_succeeded; False: payment_failed


@dataclass(frozen=True)
class CheckoutCompleted(Event):
    session: str
    customer: str
    subscription: str
    payment_status: str
    tier_hint: str  # metadata.tollway_tier, set by POST /checkout


@dataclass(frozen=True)
class CustomerDeleted(Event):
    customer: str


@dataclass(frozen=True)
class CreditsPaid(Event):
    """A credit pack paid for through Checkout (payment mode): its session's metadata, which
    the webhook service wrote when it made the session, names the account and the credits."""

    session: str
    account: str
    credits: int
    pack: str
    payment_intent: str = ""  # the payment: what its refunds and `tollway reconcile` name
    customer: str = ""  # the Stripe customer who paid ("" if the event names none)


@dataclass(frozen=True)
class PaymentRefunded(Event):
    """A charge refunded, in part or whole (``amount_refunded`` is the total so far)."""

    charge: str
    payment_intent: str
    amount: int
    amount_refunded: int
    metadata: dict[str, str]  # the charge's own (what a credit purchase's carries: below)


@dataclass(frozen=True)
class Unhandled(Event):
    type: str


Intent = (
    SubscriptionChanged
    | InvoiceSettled
    | CheckoutCompleted
    | CustomerDeleted
    | CreditsPaid
    | PaymentRefunded
    | Unhandled
)


SUBSCRIPTION_EVENTS = {
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
}
INVOICE_EVENTS = {
    "invoice.paid": True,
    "invoice.payment_succeeded": True,
    "invoice.payment_failed": False,
}


def _obj(d: Any, key: str) -> dict[str, Any]:
    v = d.get(key) if isinstance(d, dict) else None
    if not isinstance(v, dict):
        raise MalformedEvent(f"{key} must be an object")
    return v


def _id(v: Any, what: str, required: bool = True) -> str:
    """A Stripe id, given as a string or as an expanded object with an id."""
    if isinstance(v, dict):
        v = v.get("id")
    if v is None and not required:
        return ""
    if not isinstance(v, str) or not STRIPE_ID.match(v):
        raise MalformedEvent(f"{what} must be a Stripe id")
    return v


def _int(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise MalformedEvent(f"{what} must be an integer")
    return v


def _str(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise MalformedEvent(f"{what} must be a string")
    return v


def _items(sub: dict[str, Any]) -> list[dict[str, Any]]:
    items = sub.get("items", {})
    data = items.get("data", []) if isinstance(items, dict) else None
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise MalformedEvent("subscription items must be a list of objects")
    return data


def subscription_from_object(
    event: Event, sub: dict[str, Any], deleted: bool
) -> SubscriptionChanged:
    """The subscription object's state, in either payload shape. Also used for re-fetched ones."""
    items = _items(sub)
    prices: list[str] = []
    starts, ends = [], []
    # Older API versions carry a Plan (whose id is the price's id) instead of, or beside, the
    # Price: on each item, and on the subscription itself when it has one plan.
    for holder in [*items, sub]:
        price = holder.get("price") if isinstance(holder.get("price"), dict) else holder.get("plan")
        if isinstance(price, dict):
            found = _id(price.get("id"), "price")
            if found not in prices:
                prices.append(found)
            if isinstance(price.get("lookup_key"), str):
                prices.append(price["lookup_key"])
    for item in items:
        if "current_period_start" in item:  # basil and later
            starts.append(_int(item["current_period_start"], "item period start"))
            ends.append(_int(item["current_period_end"], "item period end"))
    if "current_period_start" in sub:  # before basil
        starts.append(_int(sub["current_period_start"], "current_period_start"))
        ends.append(_int(sub["current_period_end"], "current_period_end"))
    return SubscriptionChanged(
        event_id=event.event_id,
        created=event.created,
        subscription=_id(sub.get("id"), "subscription id"),
        customer=_id(sub.get("customer"), "customer"),
        status=_str(sub.get("status"), "status"),
        prices=tuple(prices),
        period_start=min(starts) if starts else 0,
        period_end=max(ends) if ends else 0,
        deleted=deleted,
        cancel_at=_cancel_at(sub, max(ends) if ends else 0),
    )


def _cancel_at(sub: dict[str, Any], period_end: int) -> int:
    """When the subscription's pending cancellation takes effect, 0 if none is pending."""
    if sub.get("cancel_at") is not None:
        return _int(sub["cancel_at"], "cancel_at")
    at_end = sub.get("cancel_at_period_end", False)
    if not isinstance(at_end, bool):
        raise MalformedEvent("cancel_at_period_end must be a boolean")
    return period_end if at_end else 0


def _invoice_subscription(inv: dict[str, Any]) -> str:
    parent = inv.get("parent")
    if isinstance(parent, dict) and isinstance(parent.get("subscription_details"), dict):
        return _id(
            parent["subscription_details"].get("subscription"), "invoice subscription", False
        )
    return _id(inv.get("subscription"), "invoice subscription", required=False)


def credit_metadata(meta: Any) -> tuple[str, int, str] | None:
    """(account, credits, pack) of a credit purchase's metadata; None if it is not one.
    Raises MalformedEvent if it is one, malformed."""
    if not isinstance(meta, dict) or ACCOUNT_META not in meta:
        return None
    account, credits, pack = meta.get(ACCOUNT_META), meta.get(CREDITS_META), meta.get(PACK_META)
    if not (isinstance(account, str) and STRIPE_ID.match(account)):
        raise MalformedEvent(f"metadata.{ACCOUNT_META} must be an account id")
    if not (
        isinstance(credits, str)
        and credits.isascii()
        and credits.isdigit()
        and len(credits) <= 13
        and 0 < int(credits) <= 10**12
    ):
        raise MalformedEvent(f"metadata.{CREDITS_META} must be a positive integer")
    return account, int(credits), str(pack or "")


def _payment_checkout(base: Event, cs: dict[str, Any]) -> Intent:
    """A payment-mode Checkout Session, completed or paid later: credits once it is paid."""
    bought = credit_metadata(cs.get("metadata"))
    if bought is None or cs.get("payment_status") != "paid":
        # Not ours, or an asynchronous payment still pending: its
        # checkout.session.async_payment_succeeded comes when it is paid.
        return Unhandled(base.event_id, base.created, "checkout.session.unpaid")
    account, credits, pack = bought
    return CreditsPaid(
        base.event_id,
        base.created,
        _id(cs.get("id"), "session id"),
        account,
        credits,
        pack,
        _id(cs.get("payment_intent"), "payment_intent", required=False),
        _id(cs.get("customer"), "customer", required=False),
    )


def _payment(base: Event, pi: dict[str, Any]) -> Intent:
    """A PaymentIntent that succeeded: a credit pack's (an auto-recharge's, or a Checkout's,
    whose session's event credits the same payment) credits once; any other is not ours."""
    bought = credit_metadata(pi.get("metadata"))
    if bought is None or pi.get("status") != "succeeded":
        return Unhandled(base.event_id, base.created, "payment_intent.other")
    account, credits, pack = bought
    pi_id = _id(pi.get("id"), "payment_intent id")
    customer = _id(pi.get("customer"), "customer", required=False)
    return CreditsPaid(base.event_id, base.created, "", account, credits, pack, pi_id, customer)


def _refund(base: Event, charge: dict[str, Any]) -> PaymentRefunded:
    meta = charge.get("metadata")
    return PaymentRefunded(
        base.event_id,
        base.created,
        _id(charge.get("id"), "charge id"),
        _id(charge.get("payment_intent"), "payment_intent", required=False),
        _int(charge.get("amount"), "amount"),
        _int(charge.get("amount_refunded"), "amount_refunded"),
        {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
    )


def parse(event: dict[str, Any]) -> Intent:
    base = Event(_id(event.get("id"), "event id"), _int(event.get("created", 0), "created"))
    kind = event["type"]
    if kind in SUBSCRIPTION_EVENTS:
        sub = _obj(_obj(event, "data"), "object")
        return subscription_from_object(base, sub, deleted=kind == "customer.subscription.deleted")
    if kind in INVOICE_EVENTS:
        inv = _obj(_obj(event, "data"), "object")
        subscription = _invoice_subscription(inv)
        if not subscription:  # a one-off invoice: nothing to do with keys
            return Unhandled(base.event_id, base.created, kind)
        customer = _id(inv.get("customer"), "customer")
        return InvoiceSettled(
            base.event_id, base.created, subscription, customer, INVOICE_EVENTS[kind]
        )
    if kind == "checkout.session.completed":
        cs = _obj(_obj(event, "data"), "object")
        if cs.get("mode") == "payment":
            return _payment_checkout(base, cs)
        if cs.get("mode") != "subscription":
            return Unhandled(base.event_id, base.created, kind)
        metadata = cs.get("metadata")
        hint = metadata.get("tollway_tier", "") if isinstance(metadata, dict) else ""
        return CheckoutCompleted(
            base.event_id,
            base.created,
            session=_id(cs.get("id"), "session id"),
            customer=_id(cs.get("customer"), "customer"),
            subscription=_id(cs.get("subscription"), "subscription"),
            payment_status=_str(cs.get("payment_status", ""), "payment_status"),
            tier_hint=hint if isinstance(hint, str) else "",
        )
    if kind == "checkout.session.async_payment_succeeded":
        return _payment_checkout(base, _obj(_obj(event, "data"), "object"))
    if kind == "payment_intent.succeeded":
        return _payment(base, _obj(_obj(event, "data"), "object"))
    if kind == "charge.refunded":
        return _refund(base, _obj(_obj(event, "data"), "object"))
    if kind == "customer.deleted":
        cus = _obj(_obj(event, "data"), "object")
        return CustomerDeleted(base.event_id, base.created, _id(cus.get("id"), "customer id"))
    return Unhandled(base.event_id, base.created, kind)
