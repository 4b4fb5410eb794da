"""The limiter under store faults: per-call timeout, circuit breaker, and usage write-back."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio.cluster import RedisCluster

from authz.breaker import Breaker
from authz.check_reply import Code
from authz.check_store import Overloaded, StoreCheck, StoreUnavailable
from authz.check_tiers import CheckTiers
from authz.redis_check_store import RedisCheckStore
from authz.redis_pipe import open_pipe
from authz.usage_buffer import UsageBuffer
from devkit.stack import free_port
from tests.support import TEST_TIERS
from tollway import schema
from tollway.clock import RedisTime
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.redis_client import connect
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration


async def sleep_redis(redis, account: str, seconds: float) -> None:
    """DEBUG SLEEP the Redis that holds ``account``: on a cluster, the node serving its slot."""
    if isinstance(redis, RedisCluster):
        node = redis.get_node_from_key(schema.account_state(account))
        await redis.execute_command("DEBUG", "SLEEP", str(seconds), target_nodes=node)
    else:
        await redis.execute_command("DEBUG", "SLEEP", str(seconds))


ARGS = CheckTiers(parse_tiers(TEST_TIERS, "test")).tier_args(None)


async def test_slow_redis_times_out_and_opens_the_breaker(redis, redis_server):
    """A blocked Redis costs one short timeout per call until the breaker opens; then none."""
    _, record = await KeyStore(redis, KeyHasher()).create("pro", "cus_1")
    client = open_pipe(redis_server, timeout_s=0.05)  # as authz connects
    limiter = RedisCheckStore(client, redis, RedisTime(), Breaker(3, 30.0), deadline_s=1.0,
                      usage_window_s=60)  # fmt: skip
    try:
        # Warm up (connect, load the script). On a busy machine a 50 ms read can miss, so a few
        # tries, and the breaker forgets them: warm-up hiccups are not what is tested.
        for _ in range(20):
            try:
                await limiter.check(StoreCheck(record.key_id, record.hash, 1, ARGS))
                break
            except StoreUnavailable:
                await asyncio.sleep(0.05)
        limiter.breaker.success()
        blocker = asyncio.create_task(sleep_redis(redis, record.account, 3))
        await asyncio.sleep(0.1)
        errors = []
        start = time.perf_counter()
        for _ in range(5):
            with pytest.raises(StoreUnavailable) as err:
                await limiter.check(StoreCheck(record.key_id, record.hash, 1, ARGS))
            errors.append(str(err.value))
        # Five calls against a Redis blocked for 3 s return long before it wakes up (on a
        # cluster each failure also refreshes the slot map, see connect()).
        assert time.perf_counter() - start < 2.0
        assert [e.startswith("StoreTimeout") for e in errors] == [True, True, True, False, False]
        assert errors[3:] == ["circuit breaker open"] * 2
        assert limiter.breaker.is_open
        await blocker
    finally:
        await client.aclose()


async def test_missed_deadline_is_overloaded_and_does_not_blame_redis(redis, redis_server):
    """Running out of the check deadline is Overloaded: the breaker stays closed."""
    _, record = await KeyStore(redis, KeyHasher()).create("pro", "cus_1")
    client = open_pipe(redis_server, timeout_s=None)  # no read timeout: only the deadline
    limiter = RedisCheckStore(client, redis, RedisTime(), Breaker(1, 30.0), deadline_s=2.0,
                      usage_window_s=60)  # fmt: skip
    try:
        # Warm up (connect, load the script) with room to spare: that is not what is tested.
        await limiter.check(StoreCheck(record.key_id, record.hash, 1, ARGS))
        limiter.deadline_s = 0.05
        blocker = asyncio.create_task(sleep_redis(redis, record.account, 0.3))
        await asyncio.sleep(0.05)
        for _ in range(3):
            with pytest.raises(Overloaded, match="check took over 50 ms"):
                await limiter.check(StoreCheck(record.key_id, record.hash, 1, ARGS))
        assert not limiter.breaker.is_open
        await blocker
    finally:
        await client.aclose()


async def test_unreachable_redis_is_store_unavailable():
    """A refused connection surfaces as StoreUnavailable, never as a raw exception."""
    client = open_pipe(f"redis://127.0.0.1:{free_port()}/0", timeout_s=None)
    limiter = RedisCheckStore(client, None, RedisTime(), Breaker(3, 1.0), deadline_s=0.5,
                      usage_window_s=60)  # fmt: skip
    with pytest.raises(StoreUnavailable, match="ConnectionError"):
        await limiter.check(StoreCheck("0123456789abcdef", "0" * 64, 1, ARGS))
    await client.aclose()


async def test_buffered_usage_is_written_to_the_usage_hash(redis):
    """Usage counted during an outage lands in the same hash check.lua increments."""
    buf = UsageBuffer(60)
    buf.add("k1", 120.0, n=3)
    buf.add("k2", 200.0)
    assert await buf.flush(redis) == 4
    assert await redis.hgetall(schema.usage("k1")) == {"120": "3"}
    assert await redis.hgetall(schema.usage("k2")) == {"180": "1"}
    assert len(buf) == 0


async def test_failed_flush_keeps_the_counts():
    """If Redis is still down, flush raises and forgets nothing."""
    client = connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    buf = UsageBuffer(60)
    buf.add("k1", 0, n=7)
    with pytest.raises(Exception, match=r"[Cc]onnect"):
        await buf.flush(client)
    assert len(buf) == 7
    await client.aclose()


async def test_a_check_redis_runs_after_its_deadline_changes_nothing(redis, redis_server):
    """A frozen Redis runs what was queued in its socket when it resumes. A check run after
    its deadline is void: it is answered EXPIRED and counts nothing, so a request authz had
    already refused is never billed."""
    _, record = await KeyStore(redis, KeyHasher()).create("pro", "cus_1")
    client = open_pipe(redis_server, timeout_s=None)  # this test waits for the late answer
    limiter = RedisCheckStore(client, redis, RedisTime(), Breaker(3, 30.0), deadline_s=2.0,
                      usage_window_s=60, expire_after_ms=50)  # fmt: skip
    usage = schema.usage(record.account)
    try:
        await limiter.check(
            StoreCheck(record.key_id, record.hash, 1, ARGS)
        )  # also learns Redis's clock
        assert limiter.redis_clock.offset_ms is not None
        blocker = asyncio.create_task(sleep_redis(redis, record.account, 0.3))
        await asyncio.sleep(0.05)
        with pytest.raises(StoreUnavailable, match="after its deadline; nothing was counted"):
            await limiter.check(StoreCheck(record.key_id, record.hash, 1, ARGS))
        await blocker
        assert sum(map(int, (await redis.hgetall(usage)).values())) == 1
        assert (
            await limiter.check(StoreCheck(record.key_id, record.hash, 1, ARGS))
        ).code is Code.OK
        assert sum(map(int, (await redis.hgetall(usage)).values())) == 2
    finally:
        await client.aclose()


async def test_a_buffered_write_retried_after_a_lost_answer_counts_once(redis):
    """The first flush reached Redis but its answer was lost (simulated by failing after the
    write): the retry carries the same write ids and adds nothing more."""
    buf = UsageBuffer(60)
    buf.add("k1", 120.0, n=3)
    buf.add("k2", 130.0, n=2, write_id="settle1")
    assert await buf.flush(redis) == 5
    buf._sent = {"again": ("k1", 120, 3), "settle1": ("k2", 120, 2)}  # "again" is a new id
    buf._total = 5
    assert await buf.flush(redis) == 5
    assert await redis.hgetall(schema.usage("k1")) == {"120": "6"}  # a new id: counted
    assert await redis.hgetall(schema.usage("k2")) == {"120": "2"}  # the same id: once
