"""Build the Redis client every service uses from a URL (hiredis parses replies when present)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis


def connect(url: str, timeout_s: float | None = None) -> Any:
    """A redis.asyncio client for ``url``; ``timeout_s`` bounds connects and socket reads."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=0,
    )
