"""Which store this is: the id a Redis (one server, or a Cluster) gets the first time tollway
writes to it, kept in Redis under one key (one slot).

Usage kept outside Redis (authz's spool files, tollway/spool.py) records the id of the store
it was counted for, and goes back only into that store. The id lives as long as the data: a
restart with AOF or RDB keeps it; ``FLUSHALL`` (or a new, empty Redis at the same address)
makes a new store with a new id, and files spooled for the old one wait for an operator
(``tollway usage spool``).
"""

from __future__ import annotations

import secrets
from typing import Any

from tollway import schema


async def store_id(redis: Any) -> str:
    """This store's id, made now if it has none (the first writer's wins)."""
    found = await redis.get(schema.STORE_ID)
    if found:
        return str(found)
    await redis.set(schema.STORE_ID, secrets.token_hex(8), nx=True)
    return str(await redis.get(schema.STORE_ID))
