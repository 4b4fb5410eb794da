"""The webhook processor against a real Redis: idempotency, ordering, retries and issuance."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import TEST_TIERS
from tollway import schema
from tollway.dead_letters import DeadLetters
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher, parse_key
from tollway.records import KeyStatus
from tollway.tiers import parse_tiers
from webhook.checkout import Checkouts, ClaimGone
from webhook.processor import Processor, UnknownTier
from webhook.subscription_states import SubscriptionStates

pytestmark = pytest.mark.integration
TABLE = parse_tiers(TEST_TIERS, "test")
NOW = 1_800_000_000
GRACE = 3 * 86400


def sub_event(eid: str, status: str, created: int, kind: str = "customer.subscription.updated",
              lookup: str = "tollway_pro", sub: str = "sub_1") -> dict:  # fmt: skip
    obj = {"id": sub, "customer": "cus_1", "status": status, "items": {"data": [{
        "price": {"id": "price_x", "lookup_key": lookup},
        "current_period_start": NOW - 10, "current_period_end": NOW + 1000}]}}  # fmt: skip
    return {"id": eid, "type": kind, "created": created, "data": {"object": obj}}


def invoice_event(eid: str, paid: bool, created: int, sub: str = "sub_1") -> dict:
    obj = {"customer": "cus_1", "parent": {"subscription_details": {"subscription": sub}}}
    kind = "invoice.paid" if paid else "invoice.payment_failed"
    return {"id": eid, "type": kind, "created": created, "data": {"object": obj}}


def checkout_event(eid: str, session: str = "cs_1", hint: str = "", sub: str = "sub_1") -> dict:
    obj = {"id": session, "mode": "subscription", "customer": "cus_1", "subscription": sub,
           "payment_status": "paid", "metadata": {"tollway_tier": hint} if hint else {}}  # fmt: skip
    return {
        "id": eid,
        "type": "checkout.session.completed",
        "created": NOW,
        "data": {"object": obj},
    }


class FlakyKeys(KeyStore):
    """A KeyStore whose sync fails a given number of times, like Redis dying mid-event."""

    failures = 0

    async def sync(self, key_id, version, fields):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Redis went away")
        return await super().sync(key_id, version, fields)


@pytest.fixture
def proc(redis):
    keys = FlakyKeys(redis, KeyHasher())
    p = Processor(keys, SubscriptionStates(redis, keys), Checkouts(redis, keys, 900), DeadLetters(redis),
                  lambda: TABLE, GRACE, now=lambda: NOW)  # fmt: skip
    return p


async def record(proc, key_id):
    return await proc.keys.get(key_id)


async def issue_key(proc) -> str:
    """The usual Stripe order: subscription created, then checkout completed; returns key id."""
    assert (
        await proc.handle(sub_event("evt_c", "active", NOW, "customer.subscription.created"))
        == "applied"
    )
    assert await proc.handle(checkout_event("evt_cs")) == "applied"
    (key_id,) = await proc.keys.owned("sub_1")
    return key_id


async def test_checkout_issues_one_key_claimable_once(proc, redis):
    """checkout.session.completed issues one active key on the price's tier; the claim works once."""
    key_id = await issue_key(proc)
    rec = await record(proc, key_id)
    assert (rec.status, rec.tier, rec.customer, rec.subscription) == (
        KeyStatus.ACTIVE,
        "pro",
        "cus_1",
        "sub_1",
    )
    assert (rec.period_start, rec.period_end) == (NOW - 10, NOW + 1000)
    claimed = await proc.checkouts.claim("cs_1")
    assert parse_key(claimed.api_key) is not None and claimed.key_id == key_id
    assert KeyHasher.key_id(KeyHasher().digest(claimed.api_key)) == key_id
    with pytest.raises(ClaimGone, match="already_claimed"):
        await proc.checkouts.claim("cs_1")
    assert await redis.exists(schema.checkout_claim("cs_1")) == 0
    assert await proc.keys.owned("cus_1") == [key_id]


async def test_claim_window_expires_in_redis(proc, redis):
    """The sealed key carries Redis's own TTL of the claim window; once gone: claim_expired."""
    await issue_key(proc)
    ttl = await redis.ttl(schema.checkout_claim("cs_1"))
    assert 890 < ttl <= 900
    await redis.delete(schema.checkout_claim("cs_1"))  # what the TTL does at 900 s
    with pytest.raises(ClaimGone, match="claim_expired"):
        await proc.checkouts.claim("cs_1")


async def test_duplicate_event_changes_nothing(proc):
    """A second delivery of an applied event answers duplicate and leaves the state alone."""
    e = sub_event("evt_1", "active", NOW)
    assert await proc.handle(e) == "applied"
    state = await proc.states.state("sub_1")
    assert await proc.handle(e) == "duplicate"
    assert await proc.states.state("sub_1") == state


async def test_concurrent_deliveries_apply_once(proc):
    """Ten concurrent deliveries of one event bump the version once; ten of a checkout, one key."""
    results = await asyncio.gather(
        *(proc.handle(invoice_event("evt_f", False, NOW)) for _ in range(10))
    )
    assert results.count("applied") >= 1 and set(results) <= {"applied", "duplicate"}
    state = await proc.states.state("sub_1")
    assert state.version == 1 and state.status is KeyStatus.PAST_DUE
    await proc.handle(sub_event("evt_c", "past_due", NOW + 1, "customer.subscription.created"))
    await asyncio.gather(*(proc.handle(checkout_event("evt_cs")) for _ in range(10)))
    assert len(await proc.keys.owned("sub_1")) == 1


async def test_updated_before_created_keeps_the_newer_state(proc):
    """subscription.updated (newer, past_due) delivered before .created (older, active)."""
    await proc.handle(sub_event("evt_u", "past_due", NOW + 5))
    assert (
        await proc.handle(sub_event("evt_c", "active", NOW, "customer.subscription.created"))
        == "stale"
    )
    state = await proc.states.state("sub_1")
    assert (state.status, state.grace_until) == (KeyStatus.PAST_DUE, NOW + GRACE)


async def test_an_in_order_event_that_changes_nothing_is_unchanged_not_stale(proc):
    """The same state again, from a newer or same-time event: "unchanged"; only an event older
    than the state it would replace is "stale"."""
    assert await proc.handle(sub_event("evt_1", "active", NOW)) == "applied"
    assert await proc.handle(sub_event("evt_2", "active", NOW)) == "unchanged"
    assert await proc.handle(sub_event("evt_0", "past_due", NOW - 5)) == "stale"


async def test_paid_before_failed_ends_active_on_the_key(proc):
    """invoice.paid (newer) before invoice.payment_failed (older): the key stays active."""
    key_id = await issue_key(proc)
    await proc.handle(invoice_event("evt_paid", True, NOW + 20))
    await proc.handle(invoice_event("evt_fail", False, NOW + 10))
    assert (await record(proc, key_id)).status is KeyStatus.ACTIVE


async def test_failure_mid_event_is_finished_by_the_retry(proc):
    """If the fan-out fails, the event answers an error; Stripe's retry completes it exactly."""
    key_id = await issue_key(proc)
    proc.keys.failures = 1
    with pytest.raises(ConnectionError):
        await proc.handle(invoice_event("evt_fail", False, NOW + 10))
    assert (await record(proc, key_id)).status is KeyStatus.ACTIVE  # not applied to the key yet
    assert await proc.states.marker("sub_1", "evt_fail") == "applied"
    assert await proc.handle(invoice_event("evt_fail", False, NOW + 10)) == "applied"
    rec = await record(proc, key_id)
    assert (rec.status, rec.grace_until) == (KeyStatus.PAST_DUE, NOW + GRACE)
    assert await proc.handle(invoice_event("evt_fail", False, NOW + 10)) == "duplicate"


async def test_price_change_moves_the_key_to_the_new_tier(proc):
    """A subscription update with another tier's price moves every key of it at once."""
    key_id = await issue_key(proc)
    await proc.handle(sub_event("evt_up", "active", NOW + 30, lookup="tollway_business"))
    assert (await record(proc, key_id)).tier == "business"


async def test_cancellation_revokes_and_customer_deletion_revokes_all(proc, redis):
    """subscription.deleted revokes the subscription's key; customer.deleted every key of theirs."""
    key_id = await issue_key(proc)
    _, other = await proc.keys.create("pro", "cus_1")
    await proc.handle(sub_event("evt_del", "canceled", NOW + 40, "customer.subscription.deleted"))
    assert (await record(proc, key_id)).status is KeyStatus.REVOKED
    assert (await record(proc, other.key_id)).status is KeyStatus.ACTIVE
    deleted = {
        "id": "evt_cd",
        "type": "customer.deleted",
        "created": NOW + 50,
        "data": {"object": {"id": "cus_1"}},
    }
    assert await proc.handle(deleted) == "applied"
    assert (await record(proc, other.key_id)).status is KeyStatus.REVOKED


async def test_operator_hold_survives_a_payment(proc):
    """An operator's suspension is not lifted by invoice.paid."""
    key_id = await issue_key(proc)
    await proc.lifecycle.suspend(key_id)
    await proc.handle(invoice_event("evt_paid", True, NOW + 60))
    rec = await record(proc, key_id)
    assert rec.status is KeyStatus.ACTIVE and rec.hold == "operator"


async def test_checkout_without_any_tier_source_fails_and_issues_nothing(proc, redis):
    """No subscription state, no hint, no Stripe: UnknownTier (503, Stripe retries), no key."""
    with pytest.raises(UnknownTier):
        await proc.handle(checkout_event("evt_cs"))
    assert await proc.keys.owned("sub_1") == []
    assert await redis.exists(schema.checkout_record("cs_1")) == 0
    assert await proc.handle(checkout_event("evt_cs2", hint="pro")) == "applied"
    assert len(await proc.keys.owned("sub_1")) == 1


async def test_unknown_event_types_are_ignored(proc, redis):
    """Anything else answers ignored and writes nothing."""
    await proc.handle(
        {"id": "evt_z", "type": "charge.dispute.created", "created": 1, "data": {"object": {}}}
    )
    assert await redis.dbsize() == 0


def plan_only_event(eid: str, status: str, created: int, kind: str, sub: str = "sub_api") -> dict:
    """A subscription as older API versions sent it: items carry a `plan`, no `price`."""
    obj = {"id": sub, "customer": "cus_api", "status": status,
           "current_period_start": NOW - 10, "current_period_end": NOW + 1000,
           "items": {"data": [{"plan": {"id": "price_pro_plan", "object": "plan"}}]}}  # fmt: skip
    return {"id": eid, "type": kind, "created": created, "data": {"object": obj}}


PLAN_TABLE = parse_tiers(
    TEST_TIERS.replace('stripe_prices = ["tollway_pro"]', 'stripe_prices = ["price_pro_plan"]'),
    "test",
)


async def test_a_subscription_made_without_checkout_from_creation_to_cancellation(proc, redis):
    """Created through the API (no Checkout), with plan-only items: the account exists from
    the first event, on the plan's tier; a key bound to it follows past_due and cancellation."""
    proc.tiers = lambda: PLAN_TABLE
    created = plan_only_event("evt_api_c", "active", NOW, "customer.subscription.created")
    assert await proc.handle(created) == "applied"
    account = await redis.hgetall(schema.account_state("sub_api"))
    assert (account["tier"], account["status"], account["customer"]) == ("pro", "active",
                                                                         "cus_api")  # fmt: skip
    _, rec = await proc.keys.create_for_subscription("sub_api", now=NOW)
    assert (rec.tier, rec.status) == ("pro", KeyStatus.ACTIVE)
    await proc.handle(invoice_event("evt_api_f", False, NOW + 10, sub="sub_api"))
    assert (await record(proc, rec.key_id)).status is KeyStatus.PAST_DUE
    deleted = plan_only_event("evt_api_d", "canceled", NOW + 20, "customer.subscription.deleted")
    assert await proc.handle(deleted) == "applied"
    assert (await record(proc, rec.key_id)).status is KeyStatus.REVOKED
    assert (await redis.hgetall(schema.account_state("sub_api")))["status"] == "revoked"


async def test_a_price_in_no_tier_is_retried_until_the_table_lists_it(proc, redis, caplog):
    """Not applied (UnknownTier: a 503, so Stripe delivers it again), with a log line that
    names the price and the fix; once the operator adds the price and the table reloads, the
    same event applies and a key can be issued for the subscription."""
    created = plan_only_event("evt_api_u", "active", NOW, "customer.subscription.created")
    with caplog.at_level("ERROR"), pytest.raises(UnknownTier, match="price_pro_plan"):
        await proc.handle(created)
    (line,) = [r for r in caplog.records if r.getMessage() == "unknown_price"]
    assert "price_pro_plan" in str(line.__dict__) and "stripe_prices" in str(line.__dict__)
    assert await redis.hgetall(schema.account_state("sub_api")) == {}  # nothing half-applied
    proc.tiers = lambda: PLAN_TABLE  # the operator adds the price; the table reloads
    assert await proc.handle(created) == "applied"  # Stripe's retry
    _, rec = await proc.keys.create_for_subscription("sub_api", now=NOW)
    assert rec.tier == "pro"


async def test_every_change_an_event_makes_is_audited_as_the_event(proc, redis):
    """The Checkout's key, the subscription's state copied to the account and its key, and a
    customer's deletion are each recorded with the event that made them; a duplicate
    delivery records nothing more."""
    from tollway.audit import AuditLog

    key_id = await issue_key(proc)
    await proc.handle(sub_event("evt_del", "canceled", NOW + 40, "customer.subscription.deleted"))
    await proc.handle(sub_event("evt_del", "canceled", NOW + 40, "customer.subscription.deleted"))
    _, other = await proc.keys.create("pro", "cus_1")
    deleted = {"id": "evt_cd", "type": "customer.deleted", "created": NOW + 50,
               "data": {"object": {"id": "cus_1"}}}  # fmt: skip
    await proc.handle(deleted)
    log = [(e.actor, e.action, e.target) for e in reversed(await AuditLog(redis).entries())]
    assert log == [
        ("stripe:evt_c", "synced", "account:sub_1"),
        ("stripe:evt_cs", "created", f"key:{key_id}"),
        ("stripe:evt_del", "synced", "account:sub_1"),
        ("stripe:evt_del", "synced", f"key:{key_id}"),
        ("stripe:evt_cd", "revoked", f"key:{other.key_id}"),  # key_id was revoked already
    ]
