"""Whether Redis may evict tollway's data, said loudly.

Nothing tollway keeps in Redis can be recomputed. Under any ``maxmemory-policy`` but
``noeviction``, a full Redis drops keys to make room: a key's record goes and the key answers
401, a usage window goes and what it counted is never billed, an event's idempotency mark
goes and a replayed webhook applies twice. With ``noeviction`` a full Redis refuses writes
instead, which tollway answers as a store error (each tier's ``on_store_error``) and counts.

So authz, metering and the webhook service read each primary's policy at start and every
``RECHECK_S`` (an operator may change it at run time): a policy that may evict is logged as
``redis_may_evict`` at error level and sets ``tollway_<service>_redis_may_evict`` to 1. A
Redis that refuses ``CONFIG GET`` (many managed services) is logged once as
``redis_eviction_policy_unknown``, with the gauge at -1: the operator has to check it there.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

from tollway.cancel import reraise_if_cancelled
from tollway.logs import fields

SAFE = "noeviction"
RECHECK_S = 300.0
UNKNOWN = -1


def gauge(service: str, registry: CollectorRegistry | None = None) -> Gauge:
    """``tollway_<service>_redis_may_evict``: 1 if a primary's policy may evict, 0 if none
    may, -1 if Redis would not say."""
    return Gauge(
        f"tollway_{service}_redis_may_evict",
        "1 if a Redis primary's maxmemory-policy may evict tollway's keys (it must be"
        " noeviction), 0 if none may, -1 if Redis refused CONFIG GET",
        registry=registry if registry is not None else REGISTRY,
    )


async def policies(redis: Any) -> dict[str, str]:
    """Each primary's ``maxmemory-policy``, by its address ("redis" for a single Redis).
    Raises redis-py's ResponseError if Redis refuses CONFIG GET."""
    if isinstance(redis, RedisCluster):
        replies: Any = await redis.config_get(
            "maxmemory-policy", target_nodes=RedisCluster.PRIMARIES
        )
        return {node: str(reply.get("maxmemory-policy", "")) for node, reply in replies.items()}
    reply = await redis.config_get("maxmemory-policy")
    return {"redis": str(reply.get("maxmemory-policy", ""))}


class EvictionWatch:
    """Reads the policies, logs and sets the gauge; ``run`` does it every RECHECK_S."""

    def __init__(self, redis: Any, may_evict: Gauge, log: logging.Logger) -> None:
        self.redis = redis
        self.may_evict = may_evict
        self.log = log
        self._said_unknown = False

    async def check(self) -> bool | None:
        """True if some primary may evict, False if none may, None if Redis would not say
        (or could not be reached: the gauge keeps its last value then)."""
        try:
            found = await policies(self.redis)
        except ResponseError as exc:
            self.may_evict.set(UNKNOWN)
            if not self._said_unknown:
                self._said_unknown = True
                self.log.warning(
                    "redis_eviction_policy_unknown",
                    extra=fields(error=str(exc), fix=f"make sure maxmemory-policy is {SAFE}"),
                )
            return None
        except (RedisError, OSError):
            reraise_if_cancelled()
            return None  # unreachable: the services' own errors say so
        risky = {node: policy for node, policy in found.items() if policy != SAFE}
        self.may_evict.set(1 if risky else 0)
        if risky:
            self.log.error(
                "redis_may_evict",
                extra=fields(
                    policies=risky,
                    detail="a full Redis would drop keys: valid keys answer 401, usage is lost",
                    fix=f"CONFIG SET maxmemory-policy {SAFE} (and in redis.conf)",
                ),
            )
        return bool(risky)

    async def run(self, interval_s: float = RECHECK_S) -> None:
        while True:
            await self.check()
            reraise_if_cancelled()
            await asyncio.sleep(interval_s)
