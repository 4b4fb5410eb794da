"""A subscription's state and how each event moves it (pure; the store applies it atomically).

Stripe status → key status:

    trialing, active               active
    past_due                       past_due, grace_until = first failure + grace_days
    unpaid, paused                 suspended
    incomplete                     pending
    canceled, incomplete_expired   revoked (final)

Events only move a subscription forward: one created before the last applied event changes
nothing. A repeated payment failure keeps the first failure's grace period rather than
extending it, and nothing brings a revoked subscription back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tollway.errors import InvalidInput
from tollway.records import KeyStatus
from webhook.events import InvoiceSettled, SubscriptionChanged

STATUS = {
    "trialing": KeyStatus.ACTIVE,
    "active": KeyStatus.ACTIVE,
    "past_due": KeyStatus.PAST_DUE,
    "unpaid": KeyStatus.SUSPENDED,
    "paused": KeyStatus.SUSPENDED,
    "incomplete": KeyStatus.PENDING,
    "canceled": KeyStatus.REVOKED,
    "incomplete_expired": KeyStatus.REVOKED,
}


class UnknownStatus(InvalidInput):
    """A subscription status Stripe does not document."""


@dataclass(frozen=True)
class SubState:
    subscription: str
    customer: str = ""
    tier: str = ""
    status: KeyStatus | None = None  # None: no event applied yet
    grace_until: int = 0
    period_start: int = 0
    period_end: int = 0
    event_created: int = 0  # Stripe `created` of the newest event applied
    version: int = 0  # bumped on every applied change; key records copy it
    cancel_at: int = 0  # a cancellation pending from then (the portal shows it); 0: none

    def to_redis(self) -> dict[str, str]:
        return {
            "subscription": self.subscription,
            "customer": self.customer,
            "tier": self.tier,
            "status": self.status.value if self.status else "",
            "grace_until": str(self.grace_until),
            "period_start": str(self.period_start),
            "period_end": str(self.period_end),
            "event_created": str(self.event_created),
            "version": str(self.version),
            "cancel_at": str(self.cancel_at),
        }

    @classmethod
    def from_redis(cls, subscription: str, raw: dict[str, str]) -> SubState:
        if not raw:
            return cls(subscription)
        return cls(
            subscription=subscription,
            customer=raw.get("customer", ""),
            tier=raw.get("tier", ""),
            status=KeyStatus(raw["status"]) if raw.get("status") else None,
            grace_until=int(raw.get("grace_until", 0)),
            period_start=int(raw.get("period_start", 0)),
            period_end=int(raw.get("period_end", 0)),
            event_created=int(raw.get("event_created", 0)),
            version=int(raw.get("version", 0)),
            cancel_at=int(raw.get("cancel_at", 0)),
        )

    def key_fields(self) -> dict[str, str]:
        """What a key record copies from its subscription."""
        out = {
            "grace_until": str(self.grace_until),
            "period_start": str(self.period_start),
            "period_end": str(self.period_end),
        }
        if self.status is not None:
            out["status"] = self.status.value
        if self.tier:
            out["tier"] = self.tier
        return out

    def account_fields(self) -> dict[str, str]:
        """What the subscription's account copies: the key fields, and when a cancellation
        the customer asked for takes effect (for the portal; access itself ends with Stripe's
        customer.subscription.deleted, which revokes)."""
        return {**self.key_fields(), "cancel_at": str(self.cancel_at)}


def _past_due(state: SubState, now: int, grace_s: int) -> SubState:
    if state.status is KeyStatus.PAST_DUE and state.grace_until:
        return state  # keep the first failure's grace period
    return replace(state, status=KeyStatus.PAST_DUE, grace_until=now + grace_s)


def outcome(state: SubState, event: SubscriptionChanged | InvoiceSettled, nxt: SubState) -> str:
    """What ``event`` did, ``nxt`` being ``transition``'s answer: "applied" (the state
    changed), "stale" (the event is older than the state it would replace), or "unchanged"
    (in order, but nothing to change: a repeat of what is known, or a revoked subscription)."""
    if nxt != state:
        return "applied"
    return "stale" if event.created < state.event_created else "unchanged"


def transition(
    state: SubState,
    event: SubscriptionChanged | InvoiceSettled,
    tier: str,
    now: int,
    grace_s: int,
) -> SubState:
    """The state after ``event``. ``tier`` is the tier its prices map to ("" = unknown, keep)."""
    if event.created < state.event_created or state.status is KeyStatus.REVOKED:
        return state
    nxt = replace(state, customer=event.customer or state.customer, event_created=event.created)
    if isinstance(event, SubscriptionChanged):
        if event.deleted:
            target = KeyStatus.REVOKED
        elif event.status in STATUS:
            target = STATUS[event.status]
        else:
            raise UnknownStatus(f"unknown subscription status {event.status!r}")
        nxt = replace(
            nxt,
            tier=tier or nxt.tier,
            period_start=event.period_start or nxt.period_start,
            period_end=event.period_end or nxt.period_end,
            cancel_at=0 if event.deleted else event.cancel_at,
        )
        if target is KeyStatus.PAST_DUE:
            nxt = _past_due(nxt, now, grace_s)
        else:
            nxt = replace(nxt, status=target, grace_until=0)
    elif event.paid:
        nxt = replace(nxt, status=KeyStatus.ACTIVE, grace_until=0)
    elif nxt.status in (None, KeyStatus.ACTIVE, KeyStatus.PAST_DUE):
        nxt = _past_due(nxt, now, grace_s)
    # else: suspended or pending is further along than a failed payment; leave it.
    return replace(nxt, version=state.version + 1) if nxt != state else state
