"""check.lua against a real Redis: exact bucket levels, quota, usage, statuses, reload, races."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.breaker import Breaker
from authz.check_reply import Code
from authz.check_store import StoreCheck
from authz.check_tiers import CheckTiers
from authz.redis_check_store import DEFAULT_SLOT_MS, RedisCheckStore
from tests.support import TEST_TIERS, RecordingPipe, redis_dump
from tollway import schema
from tollway.clock import FixedClock, RedisTime
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.lifecycle import Lifecycle
from tollway.records import Period
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, in ms
POLICY = CheckTiers(parse_tiers(TEST_TIERS, "test"))


class Harness:
    def __init__(self, redis, pipe, clock, slot_ms: int = DEFAULT_SLOT_MS) -> None:
        self.redis = redis
        self.clock = clock
        self.store = KeyStore(redis, KeyHasher())
        self.lifecycle = Lifecycle(self.store, clock)
        self.pipelines = 0
        self.accounts = 0
        self.account: dict[str, str] = {}  # key id -> account
        self.limiter = RedisCheckStore(pipe, redis, clock, Breaker(3, 1.0), deadline_s=2.0, usage_window_s=60,
                               on_pipeline=self._count, slot_ms=slot_ms)  # fmt: skip

    def _count(self) -> None:
        self.pipelines += 1

    async def key(self, tier_name: str, customer: str = "", **fields: str) -> tuple[str, str, str]:
        """Issue a key created at T0 (for a customer of its own unless ``customer`` is given),
        then override record ``fields``; (plaintext, id, digest)."""
        self.accounts += 1
        customer = customer or f"cus_{self.accounts}"
        plaintext, record = await self.store.create(tier_name, customer, now=T0 // 1000)
        self.account[record.key_id] = customer
        if fields:
            await self.redis.hset(self.record(record.key_id), mapping=fields)
        period = {k: v for k, v in fields.items() if k in ("period_start", "period_end")}
        if period:  # the billing period is the account's
            await self.redis.hset(self.state(record.key_id), mapping=period)
        return plaintext, record.key_id, record.hash

    def record(self, kid: str) -> str:
        return schema.key_record(kid, self.account[kid])

    def state(self, kid: str) -> str:
        """The key's account's bucket and quota."""
        return schema.account_state(self.account[kid])

    async def check(self, kid: str, digest: str, cost: int = 1, feature: str | None = None):
        return await self.limiter.check(StoreCheck(kid, digest, cost, POLICY.tier_args(feature)))

    async def usage(self, kid: str) -> dict[str, str]:
        return await self.redis.hgetall(schema.usage(self.account[kid]))


@pytest.fixture
def h(redis, pipe) -> Harness:
    return Harness(redis, pipe, FixedClock(T0))


async def test_bucket_levels_are_exact_on_a_pinned_clock(h):
    """Burst 5 at 1/s: five pass (4..0 left), the sixth waits 1000 ms, refill is linear."""
    _, kid, digest = await h.key("free")
    assert [(await h.check(kid, digest)).remaining for _ in range(5)] == [4, 3, 2, 1, 0]
    denied = await h.check(kid, digest)
    assert (denied.code, denied.remaining, denied.wait_ms) == (Code.RATE, 0, 1000)
    h.clock.advance(400)
    assert (await h.check(kid, digest)).wait_ms == 600
    assert float(await h.redis.hget(h.state(kid), "tokens")) == 0
    h.clock.advance(600)
    ok = await h.check(kid, digest)
    assert (ok.code, ok.remaining, ok.wait_ms) == (Code.OK, 0, 5000)
    h.clock.advance(2500)
    ok = await h.check(kid, digest)
    assert (ok.remaining, ok.wait_ms) == (1, 3500)
    assert float(await h.redis.hget(h.state(kid), "tokens")) == pytest.approx(1.5)


async def test_route_cost_drains_that_many_tokens(h):
    """A cost-5 route takes 5 tokens but counts one request for quota and usage."""
    _, kid, digest = await h.key("pro")  # burst 20
    out = await h.check(kid, digest, cost=5)
    assert (out.code, out.remaining, out.quota_used) == (Code.OK, 15, 1)
    assert sum(int(v) for v in (await h.usage(kid)).values()) == 1


async def test_route_costlier_than_burst_never_passes(h):
    """Cost above the burst is refused with wait -1 and takes nothing."""
    _, kid, digest = await h.key("free")
    out = await h.check(kid, digest, cost=6)
    assert (out.code, out.wait_ms) == (Code.RATE, -1)
    assert await h.usage(kid) == {}


async def test_quota_blocks_at_the_limit_and_resets_with_the_period(h):
    """quota 3, block: the 4th request is 429 until the period ends, then counting restarts."""
    _, kid, digest = await h.key("capped")
    assert [(await h.check(kid, digest)).quota_used for _ in range(3)] == [1, 2, 3]
    over = await h.check(kid, digest)
    period_end = T0 // 1000 + 30 * 86400
    assert (over.code, over.period_end, over.wait_ms) == (
        Code.QUOTA,
        period_end,
        period_end * 1000 - T0,
    )
    assert sum(int(v) for v in (await h.usage(kid)).values()) == 3
    h.clock.advance(over.wait_ms)
    again = await h.check(kid, digest)
    assert (again.code, again.quota_used, again.period_end) == (Code.OK, 1, period_end + 30 * 86400)


async def test_bill_tier_keeps_serving_past_quota(h):
    """over_quota = bill never blocks; every request is still counted."""
    _, kid, digest = await h.key(
        "pro", period_start=str(T0 // 1000), period_end=str(T0 // 1000 + 10)
    )
    for _ in range(4):
        assert (await h.check(kid, digest)).code is Code.OK


async def test_the_account_s_billing_period_is_used(h):
    """The quota period comes from the account's period_start/period_end."""
    start = T0 // 1000 - 100
    _, kid, digest = await h.key("capped", period_start=str(start), period_end=str(start + 3600))
    out = await h.check(kid, digest)
    assert out.period_end == start + 3600
    assert await h.redis.hget(h.state(kid), "q_period") == str(start)


async def test_usage_is_counted_per_window_and_denials_are_not(h):
    """Allowed requests land in their minute's usage field; denied ones do not."""
    _, kid, digest = await h.key("free")
    for _ in range(7):  # 5 allowed, 2 rate limited
        await h.check(kid, digest)
    h.clock.advance(61_000)
    await h.check(kid, digest)
    window = T0 // 1000
    assert await h.usage(kid) == {str(window): "5", str(window + 60): "1"}


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"status": "revoked"}, Code.REVOKED),
        ({"status": "suspended"}, Code.PAYMENT),
        ({"status": "pending"}, Code.PAYMENT),
        ({"status": "past_due", "grace_until": str(T0 // 1000 + 60)}, Code.OK),
        ({"status": "past_due", "grace_until": str(T0 // 1000)}, Code.PAYMENT),
        ({"tier": "vanished"}, Code.NO_TIER),
    ],
)
async def test_record_state_decides_before_the_bucket(h, fields, code):
    """Revoked, unpaid and unknown-tier keys are refused without touching bucket or usage."""
    _, kid, digest = await h.key("free", **fields)
    out = await h.check(kid, digest)
    assert out.code is code
    if code is not Code.OK:
        assert await h.usage(kid) == {}
        assert await h.redis.hmget(h.state(kid), "tokens", "q_used") == [None, None]
    else:
        assert out.grace_until == T0 // 1000 + 60


async def test_unknown_key_and_wrong_digest_are_unknown(h):
    """No record, or a record whose digest differs, answers UNKNOWN_KEY."""
    _, kid, digest = await h.key("free")
    assert (await h.check("0123456789abcdef", digest)).code is Code.UNKNOWN_KEY
    assert (await h.check(kid, "f" * 64)).code is Code.UNKNOWN_KEY


async def test_feature_gate_refuses_without_counting(h):
    """A route feature the tier lacks is refused; nothing is taken or counted."""
    _, kid, digest = await h.key("free")
    assert (await h.check(kid, digest, feature="reports")).code is Code.FEATURE
    assert await h.usage(kid) == {}
    _, kid2, digest2 = await h.key("pro")
    assert (await h.check(kid2, digest2, feature="reports")).code is Code.OK


async def test_dry_run_tier_allows_and_counts_what_it_would_deny(h):
    """shadow (burst 2, dry run): the third request is allowed, flagged, and counted."""
    _, kid, digest = await h.key("shadow")
    outs = [await h.check(kid, digest) for _ in range(3)]
    assert [o.code for o in outs] == [Code.OK] * 3
    assert [o.would_deny for o in outs] == [Code.OK, Code.OK, Code.RATE]
    assert sum(int(v) for v in (await h.usage(kid)).values()) == 3


async def test_shrunk_burst_clamps_the_stored_tokens(h):
    """If the tier's burst is lowered, a fuller stored bucket is cut down to it."""
    _, kid, digest = await h.key("pro")  # burst 20
    await h.check(kid, digest)
    await h.redis.hset(h.state(kid), "tokens", "500")
    assert (await h.check(kid, digest)).remaining == 19


async def test_script_flush_is_survived(h):
    """After SCRIPT FLUSH the next check reloads the script and succeeds."""
    _, kid, digest = await h.key("pro")
    await h.check(kid, digest)
    await h.redis.script_flush()
    assert (await h.check(kid, digest)).code is Code.OK
    assert sum(int(v) for v in (await h.usage(kid)).values()) == 2


async def test_redis_clock_mode_uses_server_time(redis, pipe):
    """With no pinned time the script reads Redis TIME."""
    h = Harness(redis, pipe, RedisTime())
    _, kid, digest = await h.key("pro")
    out = await h.check(kid, digest)
    assert out.code is Code.OK and abs(out.now_ms - time.time() * 1000) < 5000


async def test_200_concurrent_takes_against_burst_50_allow_exactly_50(redis, pipe):
    """The script is atomic: 200 concurrent checks on a burst-50 bucket admit exactly 50, and
    they travel coalesced: far fewer pipelines than checks, each check its own script run."""
    h = Harness(redis, pipe, RedisTime())
    _, kid, digest = await h.key("big")  # burst 50, refill 0.001/s
    outs = await asyncio.gather(*(h.check(kid, digest) for _ in range(200)))
    assert 1 <= h.pipelines <= 3  # the first check alone, then the rest (256 per pipeline)
    assert sum(o.code is Code.OK for o in outs) == 50
    assert sum(o.code is Code.RATE for o in outs) == 150
    assert sum(int(v) for v in (await h.usage(kid)).values()) == 50


async def test_no_plaintext_key_is_written_to_redis(h):
    """After issuing and using keys, no Redis key or value contains a plaintext key."""
    keys = [await h.key(t) for t in ("free", "pro")]
    for _, kid, digest in keys:
        await h.check(kid, digest)
    blob = await redis_dump(h.redis)
    assert blob and all(plain not in blob for plain, _, _ in keys)


async def test_operator_hold_is_402_and_lifting_it_restores(h):
    """A held key is refused as payment_required without touching bucket or usage."""
    _, kid, digest = await h.key("pro")
    await h.lifecycle.suspend(kid)
    assert (await h.check(kid, digest)).code is Code.PAYMENT
    assert await h.usage(kid) == {}
    await h.lifecycle.resume(kid)
    assert (await h.check(kid, digest)).code is Code.OK


async def test_rotation_overlap_then_revocation(h):
    """After rotate, both keys work during the overlap; then the old one is revoked."""
    _, kid, digest = await h.key("pro")
    _, new = await h.lifecycle.rotate(kid, overlap_s=60)
    assert (new.tier, new.customer) == ("pro", "cus_1") and new.key_id != kid
    assert (await h.check(kid, digest)).code is Code.OK
    assert (await h.check(new.key_id, new.hash)).code is Code.OK
    h.clock.advance(60_000)
    assert (await h.check(kid, digest)).code is Code.REVOKED
    assert (await h.check(new.key_id, new.hash)).code is Code.OK
    assert await h.store.owned("cus_1") == sorted([kid, new.key_id])


def many_tiers(n: int) -> str:
    return TEST_TIERS + "".join(
        f"[tiers.custom{i}]\nrequests_per_second = 5.0\nburst = {i + 1}\nmonthly_quota = 0\n"
        f'over_quota = "bill"\n'
        for i in range(n)
    )


async def test_a_check_sends_the_same_arguments_with_3_or_500_tiers(redis, pipe):
    """Only the key's tier goes to Redis: the EVALSHA is the same length whatever the size of
    the table, and the first check of a key costs one extra round trip, then none."""
    sizes = {}
    for n in (0, 500):
        recording = RecordingPipe(pipe)
        h = Harness(redis, recording, FixedClock(T0))
        tiers = CheckTiers(parse_tiers(many_tiers(n), "test"))
        _, kid, digest = await h.key("custom250" if n else "pro", customer=f"cus_t{n}")
        for _ in range(3):
            out = await h.limiter.check(StoreCheck(kid, digest, 1, tiers.tier_args(None)))
            assert out.code is Code.OK
        assert h.pipelines == 4  # the key's directory entry, then three checks
        sizes[n] = {len(cmd) for cmd in recording.sent}
    # The directory lookup (HMGET, 5 words), and the checks carrying one tier's 8 values: the
    # same whatever the size of the table.
    assert sizes[0] == sizes[500] and len(sizes[0]) == 2


async def test_a_tier_change_is_seen_on_the_next_check(h):
    """The record moves from free to pro: the next check is told TIER_CHANGED and asks again
    with pro's values, in the same call."""
    _, kid, digest = await h.key("free")
    assert (await h.check(kid, digest)).tier == "free"
    await h.redis.hset(h.record(kid), "tier", "pro")
    before = h.pipelines
    out = await h.check(kid, digest)
    assert (out.code, out.tier) == (Code.OK, "pro")
    assert h.pipelines == before + 2
    assert h.limiter.tier_of(kid) == "pro"


async def test_a_tier_table_reload_applies_to_the_next_check(h):
    """The key's tier is remembered by name only: a reloaded table's values apply at once."""
    _, kid, digest = await h.key("capped")  # quota 3, block
    assert (await h.check(kid, digest)).code is Code.OK
    tighter = CheckTiers(
        parse_tiers(TEST_TIERS.replace("monthly_quota = 3", "monthly_quota = 1"), "t")
    )
    out = await h.limiter.check(StoreCheck(kid, digest, 1, tighter.tier_args(None)))
    assert out.code is Code.QUOTA


async def test_the_account_state_has_no_ttl_and_its_quota_rolls_with_the_period(h):
    """The bucket and quota are the account's, kept for as long as the account (no TTL, so
    no EXPIRE on the check path); a new period starts the quota from zero."""
    _, kid, digest = await h.key(
        "capped", period_start=str(T0 // 1000), period_end=str(T0 // 1000 + 1000)
    )
    for _ in range(3):
        assert (await h.check(kid, digest)).code is Code.OK
    assert (await h.check(kid, digest)).code is Code.QUOTA
    assert await h.redis.ttl(h.state(kid)) == -1
    h.clock.advance(1_500_000)  # the next period: [T0 + 1000 s, T0 + 2000 s)
    out = await h.check(kid, digest)
    assert (out.code, out.quota_used) == (Code.OK, 1)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.integers(1_600_000_000, 1_800_000_000),
    length=st.integers(-5, 40 * 86_400),
    ahead=st.integers(0, 5 * 366 * 86_400),
)
async def test_the_period_check_lua_counts_in_is_the_one_metering_computes(
    redis, pipe, start, length, ahead
):
    """check.lua rolls a lapsed billing period forward by whole periods (or uses the default
    length for a period without one); records.Period.start_for, which metering and the usage
    report use, must find the same start for the same moment. (From the period's start on: a
    period that has not begun yet is not rolled, by either.)"""
    now = start + ahead
    h = Harness(redis, pipe, FixedClock(now * 1000 + 500))
    customer = f"cus_{secrets.token_hex(6)}"  # an account of its own in every example
    period = {"period_start": str(start), "period_end": str(start + length)}
    _, kid, digest = await h.key("free", customer, **period)
    assert (await h.check(kid, digest)).code is Code.OK
    counted_in = int(await redis.hget(h.state(kid), "q_period"))
    assert counted_in == Period(start, start + length).start_for(now)
