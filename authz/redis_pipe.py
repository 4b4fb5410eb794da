"""What the limiter needs from Redis on the check path, and how to get it from a URL.

``ScriptPipe`` is a pipeline of EVALSHAs with their replies in order (error replies and, on a
cluster, a failed node's exception in their command's place), plus SCRIPT LOAD. Two lean
implementations, on hiredis over asyncio.Protocol: ``RedisNode`` (authz/redis_node.py, why it
exists and its numbers) and ``RedisClusterPipe`` (authz/redis_cluster.py). redis-py stays
everywhere else (write-back, pub/sub, the other services).
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from authz.redis_cluster import RedisClusterPipe
from authz.redis_node import RedisNode, ReplyError
from tollway.settings import CLUSTER_SCHEME


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
    """The lean client for a tollway Redis URL: ``redis://[user:pass@]host:port/db`` (or
    ``rediss://``, TLS), ``unix:///path?db=N``, or
    ``redis+cluster://[user:pass@]host:port[,host:port...]``. Nothing connects until used."""
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    if url.startswith(CLUSTER_SCHEME):
        seeds = []
        for hostport in parts.netloc.rpartition("@")[2].split(","):
            host, _, port = hostport.rpartition(":")
            seeds.append((host or "127.0.0.1", int(port or 6379)))
        return RedisClusterPipe(seeds, timeout_s, password, username)
    if parts.scheme == "unix":
        db = int(parse_qs(parts.query).get("db", ["0"])[0])
        return NodePipe("", 0, timeout_s, password, username, db, path=parts.path)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a Redis URL: {url!r}")
    db = int(parts.path.strip("/") or 0)
    return NodePipe(parts.hostname or "127.0.0.1", parts.port or 6379, timeout_s, password,
                    username, db, tls=parts.scheme == "rediss")  # fmt: skip
