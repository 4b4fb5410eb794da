"""Parsing events in both payload shapes (before and after API version 2025-03-31.basil)."""

from __future__ import annotations

import pytest

from webhook.events import (
    CheckoutCompleted,
    CustomerDeleted,
    InvoiceSettled,
    MalformedEvent,
    SubscriptionChanged,
    Unhandled,
    parse,
)


def event(kind: str, obj: dict, created: int = 100) -> dict:
    return {"id": "evt_1", "type": kind, "created": created, "data": {"object": obj}}


PRICE = {"id": "price_1", "lookup_key": "tollway_pro"}
BASIL_SUB = {
    "id": "sub_1",
    "customer": "cus_1",
    "status": "active",
    "items": {"data": [{"price": PRICE, "current_period_start": 10, "current_period_end": 20}]},
}
OLD_SUB = {
    "id": "sub_1",
    "customer": {"id": "cus_1", "object": "customer"},  # an expanded customer
    "status": "active",
    "current_period_start": 10,
    "current_period_end": 20,
    "items": {"data": [{"price": PRICE}]},
}


@pytest.mark.parametrize("sub", [BASIL_SUB, OLD_SUB], ids=["basil", "pre-basil"])
def test_subscription_periods_in_both_shapes(sub):
    """Periods come from the items (basil) or the subscription (before basil)."""
    got = parse(event("customer.subscription.updated", sub))
    assert got == SubscriptionChanged(
        "evt_1", 100, "sub_1", "cus_1", "active", ("price_1", "tollway_pro"), 10, 20
    )


@pytest.mark.parametrize(
    "invoice",
    [
        {"customer": "cus_1", "parent": {"subscription_details": {"subscription": "sub_1"}}},
        {"customer": "cus_1", "subscription": "sub_1"},
    ],
    ids=["basil", "pre-basil"],
)
def test_invoice_subscription_in_both_shapes(invoice):
    """An invoice's subscription is read from parent.subscription_details or subscription."""
    assert parse(event("invoice.payment_failed", invoice)) == InvoiceSettled(
        "evt_1", 100, "sub_1", "cus_1", False
    )
    assert parse(event("invoice.paid", invoice)).paid is True


@pytest.mark.parametrize(
    ("fields", "cancel_at"),
    [
        ({}, 0),
        ({"cancel_at_period_end": False, "cancel_at": None}, 0),
        ({"cancel_at_period_end": True, "cancel_at": None}, 20),  # the period's end
        ({"cancel_at_period_end": True, "cancel_at": 20}, 20),
        ({"cancel_at_period_end": False, "cancel_at": 15}, 15),  # a date the customer chose
    ],
)
def test_a_pending_cancellation_is_read(fields, cancel_at):
    """cancel_at when Stripe gives one, else the period's end with cancel_at_period_end."""
    got = parse(event("customer.subscription.updated", {**BASIL_SUB, **fields}))
    assert isinstance(got, SubscriptionChanged) and got.cancel_at == cancel_at


def test_deleted_subscription_and_customer():
    """customer.subscription.deleted is flagged deleted; customer.deleted names the customer."""
    assert parse(event("customer.subscription.deleted", BASIL_SUB)).deleted is True
    assert parse(event("customer.deleted", {"id": "cus_1"})) == CustomerDeleted(
        "evt_1", 100, "cus_1"
    )


def test_checkout_completed_reads_session_and_hint():
    """checkout.session.completed (subscription mode) carries session, customer, subscription."""
    cs = {"id": "cs_1", "mode": "subscription", "customer": "cus_1", "subscription": "sub_1",
          "payment_status": "paid", "metadata": {"tollway_tier": "pro"}}  # fmt: skip
    assert parse(event("checkout.session.completed", cs)) == CheckoutCompleted(
        "evt_1", 100, "cs_1", "cus_1", "sub_1", "paid", "pro"
    )
    assert isinstance(
        parse(event("checkout.session.completed", {**cs, "mode": "payment"})), Unhandled
    )


PACK_SESSION = {"id": "cs_1", "mode": "payment", "payment_status": "paid", "payment_intent": "pi_1", "metadata": {
    "tollway_account": "free_1", "tollway_credits": "1000", "tollway_pack": "starter"}}  # fmt: skip


def test_one_off_invoices_and_unknown_types_are_unhandled():
    """An invoice with no subscription, or an event type we ignore, is Unhandled."""
    assert isinstance(parse(event("invoice.paid", {"customer": "cus_1"})), Unhandled)
    assert parse(event("charge.dispute.created", {})) == Unhandled(
        "evt_1", 100, "charge.dispute.created"
    )


@pytest.mark.parametrize(
    "bad",
    [
        event("customer.subscription.updated", {**BASIL_SUB, "status": 5}),
        event("customer.subscription.updated", {**BASIL_SUB, "id": "sub_{1}"}),
        event("customer.subscription.updated", {**BASIL_SUB, "items": {"data": "x"}}),
        event("customer.subscription.updated", {**BASIL_SUB, "cancel_at": "soon"}),
        event("customer.subscription.updated", {**BASIL_SUB, "cancel_at_period_end": "yes"}),
        event("customer.subscription.updated", "not an object"),
        event("invoice.paid", {"customer": "cus_1", "subscription": ["sub_1"]}),
        {
            "id": "evt_1",
            "type": "customer.deleted",
            "created": "yesterday",
            "data": {"object": {"id": "c"}},
        },
        {"id": "evt_1", "type": "customer.deleted", "created": 1},
        event("charge.refunded", {}),
        event("charge.refunded", {"id": "ch_1", "amount": "5", "amount_refunded": 5}),
        event(
            "checkout.session.completed",
            {**PACK_SESSION, "metadata": {"tollway_account": "free_1", "tollway_credits": "-5"}},
        ),
        event(
            "checkout.session.completed",
            {**PACK_SESSION, "metadata": {"tollway_account": "a{b}", "tollway_credits": "5"}},
        ),
    ],
)
def test_wrong_types_inside_a_handled_event_are_malformed(bad):
    """A handled event whose fields have the wrong types or shape raises MalformedEvent."""
    with pytest.raises(MalformedEvent):
        parse(bad)


def test_a_paid_credit_pack_session_is_credits_paid_and_an_unpaid_one_waits():
    """A payment-mode session credits when it is paid (now, or by async_payment_succeeded);
    one still unpaid, or not a credit pack's, is not acted on."""
    from webhook.events import CreditsPaid

    paid = parse(event("checkout.session.completed", PACK_SESSION))
    assert paid == CreditsPaid("evt_1", 100, "cs_1", "free_1", 1000, "starter", "pi_1")
    later = parse(event("checkout.session.async_payment_succeeded", PACK_SESSION))
    assert isinstance(later, CreditsPaid) and later.session == "cs_1"
    unpaid = {**PACK_SESSION, "payment_status": "unpaid"}
    assert isinstance(parse(event("checkout.session.completed", unpaid)), Unhandled)
    other = {**PACK_SESSION, "metadata": {}}
    assert isinstance(parse(event("checkout.session.completed", other)), Unhandled)
