"""A Redis that may evict is said loudly (tollway/eviction.py): on one Redis and on every
primary of a Cluster, and a Redis that will not say is reported as unknown."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio.cluster import RedisCluster

from devkit.stack import free_port
from tests.conftest import own_redis
from tollway import eviction
from tollway.eviction import EvictionWatch
from tollway.redis_client import connect

pytestmark = pytest.mark.integration


async def set_policy(redis: Any, policy: str) -> None:
    if isinstance(redis, RedisCluster):
        await redis.config_set("maxmemory-policy", policy, target_nodes=RedisCluster.PRIMARIES)
    else:
        await redis.config_set("maxmemory-policy", policy)


def watch(redis: Any) -> tuple[EvictionWatch, CollectorRegistry]:
    registry = CollectorRegistry()
    return EvictionWatch(redis, eviction.gauge("authz", registry), logging.getLogger("t")), registry


async def test_a_policy_that_may_evict_is_logged_and_counted(redis, caplog):
    w, registry = watch(redis)
    assert await w.check() is False
    assert registry.get_sample_value("tollway_authz_redis_may_evict") == 0
    await set_policy(redis, "allkeys-lru")
    try:
        with caplog.at_level(logging.ERROR):
            assert await w.check() is True
    finally:
        await set_policy(redis, "noeviction")
    assert registry.get_sample_value("tollway_authz_redis_may_evict") == 1
    (record,) = [r for r in caplog.records if r.getMessage() == "redis_may_evict"]
    found = record.fields["policies"]  # type: ignore[attr-defined]
    primaries = 3 if isinstance(redis, RedisCluster) else 1
    assert list(found.values()) == ["allkeys-lru"] * primaries
    assert await w.check() is False
    assert registry.get_sample_value("tollway_authz_redis_may_evict") == 0


@pytest.fixture
def no_config_redis(tmp_path):
    """A redis-server of its own with CONFIG renamed away, as many managed services have it."""
    with own_redis(tmp_path, "--rename-command", "CONFIG", "") as url:
        yield url


async def test_a_redis_that_refuses_config_is_unknown_said_once(no_config_redis, caplog):
    client = connect(no_config_redis)
    try:
        w, registry = watch(client)
        with caplog.at_level(logging.WARNING):
            assert await w.check() is None
            assert await w.check() is None
        said = [r for r in caplog.records if r.getMessage() == "redis_eviction_policy_unknown"]
        assert len(said) == 1
        assert registry.get_sample_value("tollway_authz_redis_may_evict") == eviction.UNKNOWN
    finally:
        await client.aclose()


async def test_an_unreachable_redis_changes_nothing():
    client = connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1.0)
    try:
        w, registry = watch(client)
        w.may_evict.set(1)
        assert await w.check() is None
        assert registry.get_sample_value("tollway_authz_redis_may_evict") == 1
    finally:
        await client.aclose()
