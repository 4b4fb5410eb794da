"""The limiter against a client that fails the way redis-py's cluster client does."""

from __future__ import annotations

import pytest
from redis.exceptions import RedisClusterException

from authz.breaker import Breaker
from authz.check_store import StoreUnavailable
from authz.limiter import Limiter
from tollway.clock import RedisTime


class Broken:
    """A client whose pipelines raise RedisClusterException, which is not a RedisError."""

    def __init__(self) -> None:
        self.healthy = False

    def pipeline(self, transaction: bool = False):
        outer = self

        class Pipe:
            def execute_command(self, *args) -> None:
                return None

            async def execute(self, raise_on_error: bool = True):
                if not outer.healthy:
                    raise RedisClusterException("Redis Cluster cannot be connected")
                return [[0, "pro", "cus_1", 5, 0, 1, 0, 0, 0, 1_767_225_600_000, 0]]

        return Pipe()


async def test_a_cluster_error_is_a_store_failure_and_the_breaker_recovers():
    clock = [0.0]
    breaker = Breaker(2, 1.0, now=lambda: clock[0])
    client = Broken()
    limiter = Limiter(client, RedisTime(), breaker, deadline_s=1.0, usage_window_s=60)
    for _ in range(2):
        with pytest.raises(StoreUnavailable, match="RedisClusterException"):
            await limiter.check("0123456789abcdef", "0" * 64, 1, ())
    assert breaker.is_open
    clock[0] = 1.5  # cooled down: the next check is the probe, and it fails too
    with pytest.raises(StoreUnavailable, match="RedisClusterException"):
        await limiter.check("0123456789abcdef", "0" * 64, 1, ())
    assert breaker.is_open and not breaker.probing  # the probe resolved: it did not stick
    client.healthy = True
    clock[0] = 3.0
    assert (await limiter.check("0123456789abcdef", "0" * 64, 1, ())).customer == "cus_1"
    assert not breaker.is_open
