"""Build the Redis client every service uses from a URL (hiredis parses replies when present)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

# Concurrent commands beyond this wait for a free connection (bounded by the caller's own
# timeout) instead of failing: redis-py's default pool raises past 100 connections.
DEFAULT_POOL_SIZE = 64


def connect(url: str, timeout_s: float | None = None, pool_size: int = DEFAULT_POOL_SIZE) -> Any:
    """A redis.asyncio client for ``url``; ``timeout_s`` bounds connects and socket reads."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=None,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool and closes it
