"""Finding state by SCAN: which accounts, customers or keys (the hash tag in
``tw:{<tag>}:<suffix>``) have a key with a given suffix. A SCAN walks the whole keyspace (on
a Redis Cluster, every primary), so its callers run it once a pass, not per request."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from tollway import schema


async def tags_by_suffix(
    redis: Any, suffixes: Collection[str], match: str = f"{schema.PREFIX}:{{*}}:*"
) -> dict[str, set[str]]:
    """For each of ``suffixes``, the tags of the keys named ``tw:{<tag>}:<suffix>`` (among
    those ``match`` lets through: a narrower pattern scans the same keyspace, but returns
    fewer names)."""
    found: dict[str, set[str]] = {suffix: set() for suffix in suffixes}
    async for raw in redis.scan_iter(match=match, count=1000):
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        suffix = name.rsplit(":", 1)[-1]
        if suffix in found:
            found[suffix].add(schema.tag_of(name))
    return found
