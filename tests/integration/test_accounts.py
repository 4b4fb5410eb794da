"""Accounts against a real Redis: every key of an account draws on one bucket, one quota and
one usage count; rotation and tier changes keep them."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.breaker import Breaker
from authz.check_reply import Code
from authz.check_store import StoreCheck
from authz.check_tiers import CheckTiers
from authz.redis_check_store import RedisCheckStore
from authz.redis_pipe import open_pipe
from tests.support import TEST_TIERS
from tollway import schema
from tollway.accounts import Accounts
from tollway.clock import FixedClock
from tollway.key_store import KeyNotFound, KeyStore
from tollway.keys import KeyHasher
from tollway.lifecycle import Lifecycle
from tollway.records import KeyRecord
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
POLICY = CheckTiers(parse_tiers(TEST_TIERS, "test"))


def limiter(pipe, redis, clock: FixedClock) -> RedisCheckStore:
    return RedisCheckStore(pipe, redis, clock, Breaker(3, 1.0), deadline_s=5.0, usage_window_s=60)


async def check(lim: RedisCheckStore, rec: KeyRecord) -> Code:
    return (await lim.check(StoreCheck(rec.key_id, rec.hash, 1, POLICY.tier_args(None)))).code


async def usage(redis, source: str) -> int:
    return sum(int(v) for v in (await redis.hgetall(schema.usage(source))).values())


async def test_two_keys_of_a_customer_share_one_quota(redis, pipe):
    """quota 3, block: three requests over two keys, then both are refused."""
    store = KeyStore(redis, KeyHasher())
    lim = limiter(pipe, redis, FixedClock(T0))
    _, a = await store.create("capped", "cus_q", now=T0 // 1000)
    _, b = await store.create("capped", "cus_q", now=T0 // 1000)
    assert [await check(lim, k) for k in (a, b, a)] == [Code.OK] * 3
    assert [await check(lim, k) for k in (a, b)] == [Code.QUOTA] * 2
    assert await usage(redis, "cus_q") == 3


async def test_two_keys_of_a_customer_share_one_bucket(redis, pipe):
    """burst 5, no refill on a pinned clock: five requests in all, not five per key."""
    store = KeyStore(redis, KeyHasher())
    lim = limiter(pipe, redis, FixedClock(T0))
    _, a = await store.create("free", "cus_b", now=T0 // 1000)
    _, b = await store.create("free", "cus_b", now=T0 // 1000)
    codes = [await check(lim, k) for k in (a, b) * 4]
    assert codes.count(Code.OK) == 5 and codes[5:] == [Code.RATE] * 3


async def test_rotation_keeps_the_quota(redis, pipe):
    """The successor of a key that used the whole quota is refused too."""
    store = KeyStore(redis, KeyHasher())
    lim = limiter(pipe, redis, FixedClock(T0))
    _, old = await store.create("capped", "cus_r", now=T0 // 1000)
    assert [await check(lim, old) for _ in range(3)] == [Code.OK] * 3
    _, new = await Lifecycle(store, FixedClock(T0)).rotate(old.key_id, overlap_s=60)
    assert new.account == old.account == "cus_r"
    assert await check(lim, new) is Code.QUOTA
    assert await check(lim, old) is Code.QUOTA  # still valid in the overlap, still out of quota


async def test_a_key_of_another_tier_is_refused_for_a_customer_account(redis):
    """All keys of an account share its plan: the refused key leaves nothing behind."""
    store = KeyStore(redis, KeyHasher())
    _, first = await store.create("capped", "cus_t")
    with pytest.raises(ValueError, match="account cus_t is on tier 'capped'"):
        await store.create("pro", "cus_t")
    assert await store.owned("cus_t") == [first.key_id]
    entries = [n async for n in redis.scan_iter(match="tw:{*}:key")]
    assert entries == [schema.key_directory(first.key_id)]  # the refused key's is gone


async def test_a_batch_of_keys_is_written_each_on_its_own(redis):
    """write_many: a new key, a key its account refuses (another tier), a key whose id is
    another account's, and a key written already: True, the refusal (nothing of that key
    left), False (the other account's key untouched), and False (there already)."""
    store = KeyStore(redis, KeyHasher())
    _, first = await store.create("capped", "cus_b")
    _, fresh = store.new_record(KeyRecord.template("capped", "cus_b", 1_700_000_000))
    _, refused = store.new_record(KeyRecord.template("pro", "cus_b", 1_700_000_000))
    _, clash = store.new_record(KeyRecord.template("pro", "cus_c", 1_700_000_000))
    clash = replace(clash, key_id=first.key_id)
    outcomes = await store.write_many([fresh, refused, clash, first])
    assert outcomes[0] is True and outcomes[2] is False and outcomes[3] is False
    assert "is on tier 'capped'" in str(outcomes[1])
    assert sorted(await store.owned("cus_b")) == sorted([first.key_id, fresh.key_id])
    assert (await store.get(first.key_id)).account == "cus_b"
    assert not await redis.exists(schema.key_directory(refused.key_id))
    assert (await store.get(fresh.key_id)).account == "cus_b"


async def test_a_tier_change_keeps_the_quota_used_and_clamps_the_bucket(redis, pipe):
    """From business (burst 60) to free (burst 5, quota 1000): the bucket drops to 5, and the
    requests already counted this period stay counted."""
    store = KeyStore(redis, KeyHasher())
    lim = limiter(pipe, redis, FixedClock(T0))
    await store.sync_account("sub_tc", "cus_tc", 1, {"tier": "business", "status": "active"})
    _, rec = await store.create_for_subscription("sub_tc", now=T0 // 1000)
    for _ in range(10):
        assert await check(lim, rec) is Code.OK
    await store.sync_account("sub_tc", "cus_tc", 2, {"tier": "free", "status": "active"})
    assert await store.sync(rec.key_id, 2, {"tier": "free"}) == 1
    out = await lim.check(StoreCheck(rec.key_id, rec.hash, 1, POLICY.tier_args(None)))
    assert (out.code, out.tier, out.quota_used, out.remaining) == (Code.OK, "free", 11, 4)


async def test_a_key_bound_to_a_subscription_follows_it(redis, pipe):
    """keys create --subscription: tier and state from the subscription's account."""
    store = KeyStore(redis, KeyHasher())
    with pytest.raises(KeyNotFound, match="no state for subscription sub_none"):
        await store.create_for_subscription("sub_none")
    await store.sync_account("sub_x", "cus_x", 3, {"tier": "pro", "status": "past_due",
                                                   "grace_until": "1900000000"})  # fmt: skip
    _, rec = await store.create_for_subscription("sub_x")
    assert (rec.tier, rec.customer, rec.status.value, rec.account) == ("pro", "cus_x",
                                                                       "past_due", "sub_x")  # fmt: skip
    assert rec.sync_version == 3 and await store.owned("sub_x") == [rec.key_id]
    await store.sync_account("sub_x", "cus_x", 4, {"status": "revoked"})
    with pytest.raises(ValueError, match="canceled"):
        await store.create_for_subscription("sub_x")


async def test_usage_show_reads_usage_under_the_account_and_under_a_key_id(redis, pipe):
    """Usage authz counted under a key id (it did not know the key's account then: a buffered
    write-back) is the customer's too, beside the account's own."""
    from tollway.usage_report import unsent_usage

    store = KeyStore(redis, KeyHasher())
    _, rec = await store.create("capped", "cus_u", now=T0 // 1000)
    assert await check(limiter(pipe, redis, FixedClock(T0)), rec) is Code.OK
    await redis.hincrby(schema.usage(rec.key_id), str(T0 // 1000 - 60), 4)
    unsent = await unsent_usage(store, "cus_u", POLICY.table)
    assert sum(unsent.values()) == 1 + 4


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    plan=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2)), min_size=1, max_size=40),
    tier=st.sampled_from(["capped", "free"]),
)
async def test_any_interleaving_over_keys_and_processes_stays_within_the_plan(
    redis_server, plan, tier
):
    """Requests over an account's three keys, from two authz processes (each its own lean
    client), sent concurrently in any order: on a pinned clock, no more pass than the quota
    (capped: 3, block) or the burst (free: 5) allows, and exactly that many when asked for
    more, and usage counts exactly the requests let through."""
    from tollway.redis_client import connect

    redis = connect(redis_server)
    pipes = [open_pipe(redis_server, timeout_s=5.0) for _ in range(2)]
    try:
        await redis.flushdb()
        store = KeyStore(redis, KeyHasher())
        recs = [(await store.create(tier, "cus_h", now=T0 // 1000))[1] for _ in range(3)]
        procs = [limiter(p, redis, FixedClock(T0)) for p in pipes]
        codes = await asyncio.gather(*(check(procs[p], recs[k]) for p, k in plan))
        allowed = codes.count(Code.OK)
        limit = 3 if tier == "capped" else 5
        assert allowed == min(limit, len(plan))
        assert await usage(redis, "cus_h") == allowed
    finally:
        for p in pipes:
            await p.aclose()
        await redis.aclose()


async def test_each_key_s_share_of_the_period_is_kept(redis, pipe):
    """`tollway usage show --by key`: what each key of the account used this period, counted
    by check.lua in the same write as the account's quota (no extra command)."""
    from tollway.usage_report import per_key

    store = KeyStore(redis, KeyHasher())
    lim = limiter(pipe, redis, FixedClock(T0))
    _, a = await store.create("pro", "cus_k", now=T0 // 1000)
    _, b = await store.create("pro", "cus_k", now=T0 // 1000)
    for k in (a, a, b):
        assert await check(lim, k) is Code.OK
    rows = await per_key(store, "cus_k", T0 // 1000)
    assert sorted((r.key_id, n) for r, n in rows) == sorted([(a.key_id, 2), (b.key_id, 1)])
    assert (await Accounts(store).show("cus_k")).quota_used == 3
    later = await per_key(store, "cus_k", T0 // 1000 + 31 * 86400)  # the next period
    assert sorted(n for _, n in later) == [0, 0]


async def test_an_account_s_own_limits_replace_its_tier_s_until_cleared(redis, pipe):
    """set-limits: burst 2 and quota 4 for one account of tier free (burst 5, quota 1000),
    features none; validated with the tier table's words; --clear restores the tier."""
    store = KeyStore(redis, KeyHasher())
    accounts = Accounts(store)
    clock = FixedClock(T0)
    lim = limiter(pipe, redis, clock)
    _, rec = await store.create("free", "cus_o", now=T0 // 1000)
    with pytest.raises(ValueError, match='account cus_o: field "burst": must be an integer >= 1'):
        await accounts.set_limits("cus_o", {"burst": 0}, clear=False)
    with pytest.raises(KeyNotFound):
        await accounts.set_limits("cus_nobody", {"burst": 2}, clear=False)
    await accounts.set_limits("cus_o", {"burst": 2, "monthly_quota": 4}, clear=False)
    out = await lim.check(StoreCheck(rec.key_id, rec.hash, 1, POLICY.tier_args(None)))
    assert out.code is Code.OK and out.limits == (1.0, 2, 4, None, 0, 0, 0)
    assert POLICY.tier_for(out).burst == 2  # what the RateLimit headers quote
    assert [await check(lim, rec) for _ in range(2)] == [Code.OK, Code.RATE]
    clock.advance(10_000)
    assert [await check(lim, rec) for _ in range(3)] == [Code.OK, Code.OK, Code.QUOTA]
    await accounts.set_limits("cus_o", {"features": ["reports"]}, clear=True)
    clock.advance(10_000)  # the bucket refills
    assert (await accounts.show("cus_o")).overrides == {"features": "reports"}
    args = POLICY.tier_args("reports")  # free lacks it; the account has it now
    assert (await lim.check(StoreCheck(rec.key_id, rec.hash, 1, args))).code is Code.OK
    assert (
        await lim.check(StoreCheck(rec.key_id, rec.hash, 1, POLICY.tier_args("x")))
    ).code is Code.FEATURE
    await accounts.set_limits("cus_o", {}, clear=True)
    out = await lim.check(StoreCheck(rec.key_id, rec.hash, 1, POLICY.tier_args("reports")))
    assert out.code is Code.FEATURE and out.limits is None


async def test_keys_issued_at_different_times_count_in_the_account_s_one_period(redis, pipe):
    """A customer account's second key, issued later, counts in the account's period (set by
    its first key), not one of its own: the quota is not reset by a later key."""
    store = KeyStore(redis, KeyHasher())
    lim = limiter(pipe, redis, FixedClock(T0 + 5_000))
    _, a = await store.create("capped", "cus_p", now=T0 // 1000)
    _, b = await store.create("capped", "cus_p", now=T0 // 1000 + 3)  # its own record's period
    assert b.period_start != a.period_start
    assert [await check(lim, k) for k in (a, a, b, b)] == [Code.OK] * 3 + [Code.QUOTA]


async def test_an_operator_s_tier_change_carries_the_account_over(redis, pipe):
    """accounts set-tier: a customer account on free (burst 5, quota 1000) moves to capped
    (quota 3, block) with both its keys at once; the 2 requests used stay counted, so one more
    passes; a revoked key stays as it was; a subscription account is refused."""
    store = KeyStore(redis, KeyHasher())
    accounts = Accounts(store)
    lim = limiter(pipe, redis, FixedClock(T0))
    _, a = await store.create("free", "cus_st", now=T0 // 1000)
    _, b = await store.create("free", "cus_st", now=T0 // 1000)
    _, gone = await store.create("free", "cus_st", now=T0 // 1000)
    await Lifecycle(store, FixedClock(T0)).revoke(gone.key_id)
    assert [await check(lim, k) for k in (a, b)] == [Code.OK, Code.OK]
    assert await accounts.set_tier("cus_st", "capped") == 2
    assert [await check(lim, k) for k in (b, a)] == [Code.OK, Code.QUOTA]
    assert {(await store.get(k.key_id)).tier for k in (a, b)} == {"capped"}
    assert (await store.get(gone.key_id)).tier == "free"
    assert (await accounts.show("cus_st")).plan["tier"] == "capped"
    await store.sync_account("sub_st", "cus_st", 1, {"tier": "pro", "status": "active"})
    with pytest.raises(ValueError, match="its tier follows its price"):
        await accounts.set_tier("sub_st", "free")
    with pytest.raises(KeyNotFound):
        await accounts.set_tier("cus_nobody", "free")
