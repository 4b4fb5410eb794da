"""How events move a subscription's state: the status table, ordering, grace and finality."""

from __future__ import annotations

import dataclasses

import pytest

from tollway.records import KeyStatus
from webhook.events import InvoiceSettled, SubscriptionChanged
from webhook.subscriptions import SubState, UnknownStatus, transition

NOW, GRACE = 1000, 3 * 86400


def sub(
    status: str, created: int = 10, deleted: bool = False, prices=("tollway_pro",)
) -> SubscriptionChanged:
    return SubscriptionChanged(
        "evt_s", created, "sub_1", "cus_1", status, prices, 100, 200, deleted
    )


def inv(paid: bool, created: int = 10) -> InvoiceSettled:
    return InvoiceSettled("evt_i", created, "sub_1", "cus_1", paid)


@pytest.mark.parametrize(
    ("stripe_status", "key_status"),
    [
        ("trialing", KeyStatus.ACTIVE),
        ("active", KeyStatus.ACTIVE),
        ("past_due", KeyStatus.PAST_DUE),
        ("unpaid", KeyStatus.SUSPENDED),
        ("paused", KeyStatus.SUSPENDED),
        ("incomplete", KeyStatus.PENDING),
        ("canceled", KeyStatus.REVOKED),
        ("incomplete_expired", KeyStatus.REVOKED),
    ],
)
def test_status_table(stripe_status, key_status):
    """Each Stripe subscription status maps to its key status."""
    got = transition(SubState("sub_1"), sub(stripe_status), "pro", NOW, GRACE)
    assert got.status is key_status
    assert got.grace_until == (NOW + GRACE if key_status is KeyStatus.PAST_DUE else 0)
    assert (got.tier, got.period_start, got.period_end, got.version) == ("pro", 100, 200, 1)


def test_older_events_change_nothing():
    """An event created before the last applied one is ignored (out-of-order delivery)."""
    state = transition(SubState("sub_1"), sub("active", created=20), "pro", NOW, GRACE)
    assert transition(state, sub("incomplete", created=19), "pro", NOW, GRACE) == state
    assert transition(state, inv(paid=False, created=5), "pro", NOW, GRACE) == state


def test_paid_before_failed_ends_active():
    """invoice.paid (newer) delivered before invoice.payment_failed (older) leaves it active."""
    state = transition(SubState("sub_1"), sub("active", created=1), "pro", NOW, GRACE)
    state = transition(state, inv(paid=True, created=30), "", NOW, GRACE)
    state = transition(state, inv(paid=False, created=20), "", NOW, GRACE)
    assert state.status is KeyStatus.ACTIVE


def test_repeated_failures_keep_the_first_grace_period():
    """Stripe's payment retries must not extend the grace period."""
    state = transition(SubState("sub_1"), inv(paid=False, created=1), "", NOW, GRACE)
    later = transition(state, inv(paid=False, created=2), "", NOW + 86400, GRACE)
    assert later.status is KeyStatus.PAST_DUE and later.grace_until == NOW + GRACE


def test_failed_payment_does_not_undo_a_suspension():
    """A subscription already suspended (unpaid) stays suspended on another failure."""
    state = transition(SubState("sub_1"), sub("unpaid", created=1), "pro", NOW, GRACE)
    assert (
        transition(state, inv(paid=False, created=2), "", NOW, GRACE).status is KeyStatus.SUSPENDED
    )


def test_paid_invoice_restores_access_and_clears_grace():
    """invoice.paid brings a past_due or suspended subscription back to active."""
    state = transition(SubState("sub_1"), inv(paid=False, created=1), "", NOW, GRACE)
    state = transition(state, inv(paid=True, created=2), "", NOW, GRACE)
    assert (state.status, state.grace_until) == (KeyStatus.ACTIVE, 0)


def test_revocation_is_final():
    """Nothing brings a canceled subscription back."""
    state = transition(SubState("sub_1"), sub("active", created=1, deleted=True), "pro", NOW, GRACE)
    assert state.status is KeyStatus.REVOKED
    assert transition(state, sub("active", created=5), "pro", NOW, GRACE) == state
    assert transition(state, inv(paid=True, created=5), "", NOW, GRACE) == state


def test_price_change_moves_the_tier_and_unknown_price_keeps_it():
    """A new price maps to its tier; an unmapped price ("") keeps the current tier."""
    state = transition(SubState("sub_1"), sub("active", created=1), "pro", NOW, GRACE)
    assert transition(state, sub("active", created=2), "business", NOW, GRACE).tier == "business"
    assert transition(state, sub("active", created=2), "", NOW, GRACE).tier == "pro"


def test_a_pending_cancellation_is_kept_until_taken_back_or_done():
    """cancel_at follows the newest event: set, cleared by a renewal, and 0 once deleted."""
    pending = dataclasses.replace(sub("active", created=2), cancel_at=200)
    state = transition(SubState("sub_1"), pending, "pro", NOW, GRACE)
    assert (state.status, state.cancel_at) == (KeyStatus.ACTIVE, 200)
    assert state.account_fields()["cancel_at"] == "200" and "cancel_at" not in state.key_fields()
    assert transition(state, sub("active", created=3), "pro", NOW, GRACE).cancel_at == 0  # renewed
    assert transition(state, inv(paid=True, created=3), "", NOW, GRACE).cancel_at == 200
    done = dataclasses.replace(sub("canceled", created=4, deleted=True), cancel_at=200)
    assert transition(state, done, "pro", NOW, GRACE).cancel_at == 0
    assert transition(state, sub("active", created=1), "pro", NOW, GRACE) == state  # older


def test_unknown_status_is_refused():
    """A status Stripe does not document is an error, not a guess."""
    with pytest.raises(UnknownStatus):
        transition(SubState("sub_1"), sub("frozen"), "pro", NOW, GRACE)


def test_state_round_trips_through_redis_fields():
    """to_redis/from_redis keep every field."""
    state = transition(SubState("sub_1"), inv(paid=False, created=3), "", NOW, GRACE)
    assert SubState.from_redis("sub_1", state.to_redis()) == state
    pending = dataclasses.replace(state, cancel_at=12345)
    assert SubState.from_redis("sub_1", pending.to_redis()) == pending
