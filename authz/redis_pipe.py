"""What the limiter needs from Redis on the check path, and how to get it from a URL.

``ScriptPipe`` is a pipeline of EVALSHAs with their replies in order (error replies and, on a
cluster, a failed node's exception in their command's place), plus SCRIPT LOAD. Two lean
implementations, on hiredis over asyncio.Protocol: ``RedisNode`` (authz/redis_node.py, why it
exists and its numbers) and ``RedisClusterPipe`` (authz/redis_cluster.py). redis-py stays
everywhere else (write-back, pub/sub, the other services).
"""

from __future__ import annotations

from typing import Any, Protocol

from authz.redis_cluster import RedisClusterPipe
from authz.redis_node import RedisNode, ReplyError
from tollway import redis_url


class ScriptPipe(Protocol):
    async def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]: ...

    async def script_load(self, source: str) -> None: ...

    async def aclose(self) -> None: ...


def is_noscript(reply: Any) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT")


class NodePipe(RedisNode):
    """A single Redis as a ScriptPipe."""

    async def script_load(self, source: str) -> None:
        (reply,) = await self.execute([("SCRIPT", "LOAD", source)])
        if isinstance(reply, ReplyError):
            raise reply


def open_pipe(url: str, timeout_s: float | None) -> ScriptPipe:
    """The lean client for a tollway Redis URL (tollway/redis_url.py). Nothing connects until
    used. Raises ValueError for a URL that is not one."""
    t = redis_url.parse(url)
    if t.cluster:
        return RedisClusterPipe(list(t.seeds), timeout_s, t.password, t.username)
    if t.path:
        return NodePipe("", 0, timeout_s, t.password, t.username, t.db, path=t.path)
    ((host, port),) = t.seeds
    return NodePipe(host, port, timeout_s, t.password, t.username, t.db, tls=t.tls)
