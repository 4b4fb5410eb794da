"""The limiter against a pipe that fails as a whole, then recovers."""

from __future__ import annotations

from typing import Any

import pytest

from authz.breaker import Breaker
from authz.check_store import StoreCheck, StoreUnavailable
from authz.redis_check_store import RedisCheckStore
from authz.redis_node import StoreConnectionError
from tollway.clock import RedisTime


class Broken:
    """A pipe whose pipelines raise until it is healed."""

    def __init__(self) -> None:
        self.healthy = False

    async def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not self.healthy:
            raise StoreConnectionError("cannot connect to 127.0.0.1:1")
        return [self.reply(c) for c in commands]

    @staticmethod
    def reply(command: tuple[Any, ...]) -> list[Any]:
        if command[0] == "HMGET":  # the key's directory entry
            return ["sub_1", "pro", None, None]  # account, tier, external id, own id
        return [0, "pro", "cus_1", 5, 0, 1, 0, 0, 0, 1_767_225_600_000, 0]

    async def script_load(self, source: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_a_failed_pipeline_is_a_store_failure_and_the_breaker_recovers():
    clock = [0.0]
    breaker = Breaker(2, 1.0, now=lambda: clock[0])
    client = Broken()
    limiter = RedisCheckStore(client, None, RedisTime(), breaker, deadline_s=1.0, usage_window_s=60)
    for _ in range(2):
        with pytest.raises(StoreUnavailable, match="StoreConnectionError"):
            await limiter.check(StoreCheck("0123456789abcdef", "0" * 64, 1, lambda name: ()))
    assert breaker.is_open
    clock[0] = 1.5  # cooled down: the next check is the probe, and it fails too
    with pytest.raises(StoreUnavailable, match="StoreConnectionError"):
        await limiter.check(StoreCheck("0123456789abcdef", "0" * 64, 1, lambda name: ()))
    assert breaker.is_open and not breaker.probing  # the probe resolved: it did not stick
    client.healthy = True
    clock[0] = 3.0
    assert (
        await limiter.check(StoreCheck("0123456789abcdef", "0" * 64, 1, lambda name: ()))
    ).customer == "cus_1"
    assert not breaker.is_open
