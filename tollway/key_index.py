"""Ordered indexes of keys and accounts, for lists that page by cursor.

A key's id is random, and an owner's set of key ids (``schema.owned_keys``) has no order, so
neither can say "the next 100 after this one" without reading everything. These indexes are
sorted sets whose members all score 0 and sort by their text: ``<created>:<key id>`` (created
as 10 digits, so that text order is time order) for keys, the account id for accounts. A page
is one ``ZRANGE ... BYLEX LIMIT``: O(log n + page) in Redis, whatever the index's size.

Written by ``KeyStore.write`` before a key's directory entry (as the owner sets are), so a
crash can leave an entry for a key that was never finished; ``KeyStore`` skips such entries
when it reads a page. Keys issued before the indexes existed are added by ``tollway keys
reindex`` (``KeyStore.reindex``).
"""

from __future__ import annotations

from typing import Any

from tollway import schema
from tollway.records import KeyRecord

# Where a page is read from: every key, an owner's (account or customer), an external id's.
ALL, OWNER, EXTERNAL = "all", "owner", "external"


def key_member(record: KeyRecord) -> str:
    return f"{record.created:010d}:{record.key_id}"


def key_index(kind: str, value: str = "") -> str:
    if kind == ALL:
        return schema.KEY_INDEX
    if kind == OWNER:
        return schema.keys_of_owner(value)
    return schema.keys_of_external(value)


class KeyIndex:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def add(self, record: KeyRecord) -> None:
        """Index a key in every list it belongs to (idempotent)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            self.queue(pipe, record)
            await pipe.execute()

    def queue(self, pipe: Any, record: KeyRecord) -> None:
        """``add``'s commands, queued on a pipeline the caller executes."""
        member = key_member(record)
        names = [schema.KEY_INDEX, schema.keys_of_owner(record.customer)]
        if record.subscription:
            names.append(schema.keys_of_owner(record.subscription))
        if record.external_id:
            names.append(schema.keys_of_external(record.external_id))
        for name in names:
            pipe.zadd(name, {member: 0})
        pipe.zadd(schema.ACCOUNT_INDEX, {record.account: 0})

    async def add_account(self, account: str) -> None:
        await self.redis.zadd(schema.ACCOUNT_INDEX, {account: 0})

    async def page(self, name: str, after: str, limit: int) -> tuple[list[str], bool]:
        """Up to ``limit`` members of index ``name`` after member ``after`` ("" from the
        start), in order, and whether more follow."""
        low = f"({after}" if after else "-"
        members = await self.redis.zrange(name, low, "+", bylex=True, offset=0, num=limit + 1)
        text = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        return text[:limit], len(text) > limit

    async def key_ids(self, name: str, after: str, limit: int) -> tuple[list[str], bool]:
        """``page`` of a key index, as key ids (``after``: a member, see ``key_member``)."""
        members, more = await self.page(name, after, limit)
        return [m.split(":", 1)[1] for m in members], more
