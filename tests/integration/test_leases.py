"""Lease mode against a real Redis: rare Redis calls, exact usage, returned tokens, idempotent
settlements, the quota cap, and revocation reaching a lease through pub/sub."""

from __future__ import annotations

import asyncio

import pytest
from envoy.service.auth.v3 import external_auth_pb2 as pb
from prometheus_client import CollectorRegistry

from authz import invalidation
from authz.breaker import Breaker
from authz.check_store import ScriptCall, StoreCheck
from authz.check_tiers import CheckTiers
from authz.leases import LeaseBook
from authz.metrics import AuthzMetrics
from authz.redis_check_store import RedisCheckStore
from authz.servicer import AuthzServicer
from authz.usage_buffer import UsageBuffer
from tests.support import RecordingPipe, check_request
from tollway import schema, scripts
from tollway.clock import FixedClock, RedisTime, WallClock
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.lifecycle import Lifecycle
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
TIERS = """
[tiers.leased]
requests_per_second = 0.001
burst = 1000
monthly_quota = 0
over_quota = "bill"
limiter = "lease"
lease_tokens = 50

[tiers.leased_capped]
requests_per_second = 1000.0
burst = 1000
monthly_quota = 20
over_quota = "block"
limiter = "lease"
lease_tokens = 50
"""
POLICY = CheckTiers(parse_tiers(TIERS, "test"))


class Stack:
    def __init__(self, redis, pipe, clock=None) -> None:
        self.redis = redis
        self.pipelines = 0
        self.sent = RecordingPipe(pipe)
        self.limiter = RedisCheckStore(self.sent, redis, clock or FixedClock(T0), Breaker(3, 1.0), 2.0, 60,
                               on_pipeline=self._count)  # fmt: skip
        self.leases = LeaseBook(ttl_s=60.0)
        self.service = AuthzServicer(POLICY, self.limiter, KeyHasher(), UsageBuffer(60),
                                    AuthzMetrics(CollectorRegistry()), self.leases)  # fmt: skip
        self.store = KeyStore(redis, KeyHasher())

    def _count(self) -> None:
        self.pipelines += 1

    async def call(self, key: str) -> pb.CheckResponse:
        return pb.CheckResponse.FromString(
            await self.service.Check(check_request({"x-api-key": key}), None)
        )

    async def counted(self, account: str) -> int:
        return sum(int(v) for v in (await self.redis.hgetall(schema.usage(account))).values())


async def test_lease_mode_calls_redis_once_per_lease_and_counts_exactly(redis, pipe):
    s = Stack(redis, pipe)
    key, rec = await s.store.create("leased", "cus_1")
    await redis.script_load(scripts.lua("check"))  # no NOSCRIPT retry to count
    codes = [(await s.call(key)).status.code for _ in range(500)]
    assert codes == [0] * 500
    # Each call: its own request plus a lease of 50; and once, first, the key's tier is
    # learned (check.lua answers TIER_CHANGED to a key this process has not seen).
    assert s.pipelines == 1 + -(-500 // 51)
    assert await s.counted(rec.account) < 500  # the last lease's requests are still owed
    s.leases.close_all()
    assert await s.service.settle_leases() > 0
    assert await s.counted(rec.account) == 500
    state = await redis.hgetall(schema.account_state(rec.account))
    assert state["q_used"] == "500"
    # The unused part of the last lease went back: 500 taken from a bucket of 1000.
    assert float(state["tokens"]) == pytest.approx(500, abs=1)


async def test_a_settlement_retried_with_the_same_id_counts_once(redis, pipe):
    s = Stack(redis, pipe)
    _, rec = await s.store.create("leased", "cus_1")
    args = POLICY.tier_args(None)
    for _ in range(2):  # the second call is a retry of the first, whose answer was "lost"
        await s.limiter.check(
            StoreCheck(rec.key_id, rec.hash, 0, args, 7, 3, ScriptCall.SETTLE, "abc123")
        )
    await s.limiter.check(
        StoreCheck(rec.key_id, rec.hash, 0, args, 2, 0, ScriptCall.SETTLE, "def456")
    )
    assert await s.counted(rec.account) == 9


async def test_a_lease_never_reaches_past_a_blocking_quota(redis, pipe):
    s = Stack(redis, pipe)
    key, rec = await s.store.create("leased_capped", "cus_1")
    codes = [(await s.call(key)).denied_response.status.code for _ in range(30)]
    assert codes == [0] * 20 + [429] * 10  # 0: not denied
    s.leases.close_all()
    await s.service.settle_leases()
    assert await s.counted(rec.account) == 20


async def test_revocation_reaches_a_lease_through_pubsub(redis, pipe):
    s = Stack(redis, pipe, RedisTime())
    key, rec = await s.store.create("leased", "cus_1")
    ready = asyncio.Event()
    listener = asyncio.create_task(invalidation.listen(redis, s.leases, ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        assert [(await s.call(key)).status.code for _ in range(5)] == [0] * 5
        assert len(s.leases) == 1 and s.pipelines <= 2  # four of them from the lease
        await Lifecycle(s.store, WallClock()).revoke(key)
        for _ in range(100):  # pub/sub is asynchronous: allow it up to 1 s
            if not len(s.leases):
                break
            await asyncio.sleep(0.01)
        resp = await s.call(key)
        assert resp.denied_response.status.code == 401
        assert resp.status.message == "key_revoked"
        assert await s.counted(rec.account) == 5  # the denial's call settled the lease
    finally:
        listener.cancel()


async def test_checks_arriving_during_a_renewal_wait_for_its_lease(redis, pipe):
    """50 checks at once, again and again: when the lease runs out, the checks behind the one
    renewing it wait and spend the new lease instead of each asking Redis. All are counted."""
    s = Stack(redis, pipe)
    key, rec = await s.store.create("leased", "cus_1")
    await s.call(key)  # the key's tier is known: its checks may wait for a renewal
    before = len(s.sent.sent)
    for _ in range(10):
        codes = [r.status.code for r in await asyncio.gather(*(s.call(key) for _ in range(50)))]
        assert codes == [0] * 50
    # 500 checks on leases of 50 (+1 for the renewing check): about 10 renewals. Without the
    # wait, every check that met an empty lease went to Redis on its own: 100+ scripts.
    assert len(s.sent.sent) - before <= 25
    s.leases.close_all()
    await s.service.settle_leases()
    assert await s.counted(rec.account) == 501
