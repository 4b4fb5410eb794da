"""Fixed-window counters against a real Redis: counted and expired in one step."""

from __future__ import annotations

import hashlib

import pytest

from tollway import schema
from tollway.throttle import Throttle

pytestmark = pytest.mark.integration


def name(kind: str, who: str) -> str:
    return schema.throttle(kind, hashlib.sha256(who.encode()).hexdigest())


async def test_a_counter_always_has_its_window_as_expiry(redis):
    """The first hit sets the expiry with the count; a counter left without one (INCR then a
    lost EXPIRE, as two calls could) gets one at its next hit instead of locking out for good."""
    throttle = Throttle(redis, 900)
    assert [await throttle.hit("signin_ip", "203.0.113.9", 2) for _ in range(3)] == [
        True, True, False]  # fmt: skip
    assert 0 < await redis.ttl(name("signin_ip", "203.0.113.9")) <= 900
    await redis.set(name("signin_ip", "198.51.100.1"), 50)  # no TTL
    assert await throttle.hit("signin_ip", "198.51.100.1", 2) is False
    assert 0 < await redis.ttl(name("signin_ip", "198.51.100.1")) <= 900
