"""Apply one verified Stripe event to key state: parse, resolve the tier, apply once, fan out.

``handle(event)`` returns what happened: "applied", "duplicate", "stale" (older than the
state it would replace), "unchanged" (in order, but it changes nothing), "ignored". Errors:

    Exception
    ├── MalformedEvent / UnknownStatus   the payload is wrong: 400, nothing changes
    ├── UnknownTier                      no tier lists the subscription's price: 503, so Stripe
    │                                    retries while the operator fixes the tier table
    └── anything else (Redis, Stripe)    503, so Stripe retries; writes so far converge then
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, assert_never

from tollway.clock import WallClock
from tollway.dead_letters import ERROR_REPORT, DeadLetters
from tollway.errors import NotFound
from tollway.key_store import KeyStore
from tollway.lifecycle import Lifecycle
from tollway.logs import fields
from tollway.scripts import Result
from tollway.tiers import TierTable
from webhook.checkout import Checkouts
from webhook.events import (
    CheckoutCompleted,
    CreditsPaid,
    CustomerDeleted,
    Event,
    InvoiceSettled,
    PaymentRefunded,
    SubscriptionChanged,
    Unhandled,
    parse,
    subscription_from_object,
)
from webhook.purchases import Purchases
from webhook.subscription_states import APPLIED, DONE, SubscriptionStates
from webhook.subscriptions import SubState, outcome, transition

log = logging.getLogger("tollway.webhook")
CAS_ATTEMPTS = 8
METER_ERROR_REPORT = "v1.billing.meter.error_report_triggered"


class UnknownTier(NotFound):
    """No tier in the table lists any of the subscription's prices."""


def tier_for(table: TierTable, prices: tuple[str, ...]) -> str:
    for tier in table:
        if any(p in tier.stripe_prices for p in prices):
            return tier.name
    return ""


class Processor:
    def __init__(
        self,
        keys: KeyStore,
        states: SubscriptionStates,
        checkouts: Checkouts,
        dead_letters: DeadLetters,
        tiers: Callable[[], TierTable],
        grace_s: int,
        stripe: Any = None,  # a StripeClient when re-fetching or resolving tiers is possible
        refetch: bool = False,
        now: Callable[[], float] = time.time,
        purchases: Purchases | None = None,
    ) -> None:
        self.keys = keys
        self.lifecycle = Lifecycle(keys, WallClock())
        self.states = states
        self.checkouts = checkouts
        self.dead_letters = dead_letters
        self.tiers = tiers
        self.grace_s = grace_s
        self.stripe = stripe
        self.refetch = refetch
        self.now = now
        # Credit packs (prepaid tiers); None: their events are ignored
        self.purchases = purchases
        self._logged_unhandled: set[str] = set()

    async def handle(self, event: dict[str, Any]) -> str:
        if event["type"] == METER_ERROR_REPORT:
            return await self._meter_error(event)
        intent = parse(event)
        if isinstance(intent, Unhandled):
            if intent.type not in self._logged_unhandled:
                self._logged_unhandled.add(intent.type)
                log.info("event_ignored", extra=fields(type=intent.type, event_id=intent.event_id))
            return "ignored"
        if isinstance(intent, SubscriptionChanged | InvoiceSettled):
            return await self._subscription(intent)
        if isinstance(intent, CheckoutCompleted):
            return await self._once(intent.session, intent, self._checkout)
        if isinstance(intent, CustomerDeleted):
            return await self._once(intent.customer, intent, self._customer_deleted)
        # Each applies once by its own reference (tollway/credits.py): no marker needed.
        if isinstance(intent, CreditsPaid):
            return await self.purchases.paid(intent) if self.purchases else "ignored"
        if isinstance(intent, PaymentRefunded):
            return await self.purchases.refunded(intent) if self.purchases else "ignored"
        # An intent added to the parser without a branch here fails mypy, and at run time is a
        # 503 (Stripe retries), never another intent's action (revoking a customer's keys).
        assert_never(intent)

    async def _fetch_subscription(self, sub_id: str, event: Event) -> SubscriptionChanged:
        sub = (await self.stripe.v1.subscriptions.retrieve_async(sub_id)).to_dict()
        return subscription_from_object(event, sub, deleted=sub.get("status") == "canceled")

    async def _subscription(self, event: SubscriptionChanged | InvoiceSettled) -> str:
        if self.refetch and self.stripe is not None:
            event = await self._fetch_subscription(event.subscription, event)
        tier = ""
        if isinstance(event, SubscriptionChanged):
            tier = tier_for(self.tiers(), event.prices)
            if event.prices and not tier and not event.deleted:
                # Not applied, answered 503: Stripe retries (for days) while the operator adds
                # the price to a tier and reloads the table. A 200 here would lose the event.
                log.error(
                    "unknown_price",
                    extra=fields(
                        subscription=event.subscription,
                        event_id=event.event_id,
                        prices=list(event.prices),
                        fix="add a price to a tier's stripe_prices, "
                        "then reload the tier table; Stripe delivers the event again",
                    ),
                )
                raise UnknownTier(
                    f"no tier lists a price of subscription {event.subscription} "
                    f"({', '.join(event.prices)}): add one to a tier's stripe_prices"
                )
        for _ in range(CAS_ATTEMPTS):
            state, marker = await self.states.read(event.subscription, event.event_id)
            if marker == DONE:
                return "duplicate"
            if marker == APPLIED:  # an earlier delivery applied it but did not finish
                return await self._finish(state, event.event_id, "applied")
            nxt = transition(state, event, tier, int(self.now()), self.grace_s)
            result = await self.states.compare_and_set(state, nxt, event.event_id)
            if result is Result.DONE:
                return await self._finish(nxt, event.event_id, outcome(state, event, nxt))
        raise RuntimeError(f"subscription {event.subscription} kept changing; retry later")

    async def _finish(self, state: SubState, event_id: str, outcome: str) -> str:
        await self.states.fan_out(state, event_id)
        await self.states.mark_done(state.subscription, event_id)
        return outcome

    async def _once(self, subject: str, intent: Any, apply: Callable[[Any], Any]) -> str:
        """Events with no ordering to keep: apply idempotently, then mark done."""
        if await self.states.marker(subject, intent.event_id) == DONE:
            return "duplicate"
        await apply(intent)
        await self.states.mark_done(subject, intent.event_id)
        return "applied"

    async def resolve_tier(self, subscription: str, hint: str) -> tuple[str, SubState]:
        """The tier for a new key: the subscription's known tier, the checkout's hint, or the
        price of the subscription fetched from Stripe. Raises UnknownTier."""
        state = await self.states.state(subscription)
        table = self.tiers()
        if state.tier and table.get(state.tier):
            return state.tier, state
        if hint and table.get(hint):
            return hint, state
        if self.stripe is not None:
            fetched = await self._fetch_subscription(subscription, Event("evt_fetch", 0))
            tier = tier_for(table, fetched.prices)
            if tier:
                return tier, state
            log.error(
                "unknown_price",
                extra=fields(subscription=subscription, prices=list(fetched.prices)),
            )
            raise UnknownTier(
                f"no tier lists any price of subscription {subscription} "
                f"({', '.join(fetched.prices) or 'it has no price or plan'}): add one to a "
                "tier's stripe_prices"
            )
        raise UnknownTier(f"no tier lists a price of subscription {subscription}")

    async def _checkout(self, intent: CheckoutCompleted) -> None:
        tier, state = await self.resolve_tier(intent.subscription, intent.tier_hint)
        key_id = await self.checkouts.issue(
            intent.session,
            intent.customer,
            intent.subscription,
            tier,
            intent.payment_status,
            state,
            now=int(self.now()),
            actor=f"stripe:{intent.event_id}",
        )
        log.info("key_issued", extra=fields(session=intent.session, key_id=key_id, tier=tier))

    async def _meter_error(self, event: dict[str, Any]) -> str:
        """A thin (v2) event: Stripe could not bill some meter events, e.g. for an unknown
        customer. Recorded with the dead letters, where `tollway metering dead-letters` lists it."""
        raw = event.get("related_object")
        related: dict[str, Any] = raw if isinstance(raw, dict) else {}
        record = {
            "kind": ERROR_REPORT,
            "reason": "Stripe reported meter events it could not bill; see the event in Stripe",
            "event": {
                "id": event["id"],
                "created": event.get("created"),
                "related_object": related,
            },
            "customer": "",
            "field": "",
        }
        await self.dead_letters.park(event["id"], record)
        log.error("meter_error_report", extra=fields(event_id=event["id"], meter=related.get("id")))
        return "applied"

    async def _customer_deleted(self, intent: CustomerDeleted) -> None:
        acting = self.lifecycle.acting_as(f"stripe:{intent.event_id}")
        for key_id in await self.keys.owned(intent.customer):
            with contextlib.suppress(LookupError, ValueError):  # gone, or revoked already
                await acting.revoke(key_id)
        log.info("customer_keys_revoked", extra=fields(customer=intent.customer))
