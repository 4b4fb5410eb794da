"""Key records in Redis: issue, look up, hold, revoke, rotate and sync API keys.

Used by the CLI and the webhook service; authz only reads records through check.lua.
Raises ``KeyNotFound`` for a key or id with no record, ``ValueError`` for a change that a
revoked key refuses (revocation is final).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from tollway import schema, scripts
from tollway.keys import KeyHasher, KeyMode, generate_key, looks_like_key_id, parse_key
from tollway.logs import fields
from tollway.records import KeyRecord, KeyStatus

log = logging.getLogger("tollway.store")

OPERATOR_HOLD = "operator"


class KeyNotFound(LookupError):
    """No key record matches the given key or key id."""


class KeyStore:
    def __init__(self, redis: Any, hasher: KeyHasher) -> None:
        self.redis = redis
        self.hasher = hasher
        self._create = scripts.register(redis, "create_record")
        self._set_status = scripts.register(redis, "set_status")
        self._set_hold = scripts.register(redis, "set_hold")
        self._sync = scripts.register(redis, "sync_key")

    def new_record(
        self, template: KeyRecord, mode: KeyMode = KeyMode.LIVE
    ) -> tuple[str, KeyRecord]:
        """A fresh plaintext key and its record, with everything else copied from ``template``."""
        plaintext = generate_key(mode)
        digest = self.hasher.digest(plaintext)
        record = replace(template, key_id=self.hasher.key_id(digest), hash=digest, mode=mode.value)
        return plaintext, record

    async def store(self, record: KeyRecord) -> bool:
        """Write a new record whole; False if its key id is taken. Indexes are written first,
        so a crash in between leaves at worst an index entry for a key that does not exist."""
        for owner in (record.customer, record.subscription):
            if owner:
                await self.redis.sadd(schema.owned_keys(owner), record.key_id)
        fields = [x for pair in record.to_redis().items() for x in pair]
        return bool(await self._create(keys=[schema.key_record(record.key_id)], args=fields))

    async def create(
        self,
        tier: str,
        customer: str,
        mode: KeyMode = KeyMode.LIVE,
        subscription: str = "",
        now: int | None = None,
    ) -> tuple[str, KeyRecord]:
        """Issue a new active key. Returns (plaintext, record); only the record is stored."""
        created = int(time.time()) if now is None else now
        schema.owned_keys(customer)  # raises ValueError for an id unfit for a key name
        template = KeyRecord.template(tier, customer, created, subscription)
        while True:
            plaintext, record = self.new_record(template, mode)
            # A 64-bit key id collision is astronomically unlikely; if it happens, draw again.
            if await self.store(record):
                return plaintext, record

    def key_id_of(self, key_or_id: str) -> str:
        """The key id for a plaintext key or a key id. Raises KeyNotFound for anything else."""
        if looks_like_key_id(key_or_id):
            return key_or_id
        if parse_key(key_or_id) is not None:
            return self.hasher.key_id(self.hasher.digest(key_or_id))
        raise KeyNotFound("not a tollway key or key id")

    async def get(self, key_or_id: str) -> KeyRecord:
        key_id = self.key_id_of(key_or_id)
        raw = await self.redis.hgetall(schema.key_record(key_id))
        if not raw:
            raise KeyNotFound(f"no key with id {key_id}")
        record = KeyRecord.from_redis({_s(k): _s(v) for k, v in raw.items()})
        presented = "" if looks_like_key_id(key_or_id) else self.hasher.digest(key_or_id)
        if presented and not hmac.compare_digest(record.hash, presented):
            raise KeyNotFound(f"no key with id {key_id}")
        return record

    async def _change(self, script: Any, key_or_id: str, arg: str) -> KeyRecord:
        record = await self.get(key_or_id)
        result = await script(keys=[schema.key_record(record.key_id)], args=[arg])
        if result == 0:
            raise KeyNotFound(f"no key with id {record.key_id}")
        if result == -1:
            raise ValueError(f"key {record.key_id} is revoked; revocation is final")
        await self.announce(record.key_id)
        return await self.get(record.key_id)

    async def announce(self, key_id: str) -> None:
        """Tell every authz process that the key's record changed, so that it drops what it
        holds for the key (a lease). Best effort: a lease expires on its own within its TTL."""
        try:
            await self.redis.publish(schema.KEY_CHANGES, key_id)
        except (RedisError, RedisClusterException, OSError) as exc:
            log.warning("key_change_not_announced", extra=fields(key_id=key_id, error=str(exc)))

    async def revoke(self, key_or_id: str) -> KeyRecord:
        return await self._change(self._set_status, key_or_id, KeyStatus.REVOKED.value)

    async def hold(self, key_or_id: str) -> KeyRecord:
        """An operator's suspension (402), kept apart from the billing status so that a later
        payment webhook cannot lift it."""
        return await self._change(self._set_hold, key_or_id, OPERATOR_HOLD)

    async def release(self, key_or_id: str) -> KeyRecord:
        return await self._change(self._set_hold, key_or_id, "")

    async def rotate(
        self, key_or_id: str, overlap_s: int, now: int | None = None
    ) -> tuple[str, KeyRecord]:
        """Issue a successor with the same customer, tier and subscription; the old key stays
        valid for ``overlap_s`` seconds (0: revoked at once). Returns the new (plaintext, record)."""
        old = await self.get(key_or_id)
        if old.status is KeyStatus.REVOKED:
            raise ValueError(f"key {old.key_id} is revoked; rotate a live key")
        created = int(time.time()) if now is None else now
        template = replace(old, created=created, hold="", expires_at=0)
        while True:
            plaintext, record = self.new_record(template, KeyMode(old.mode))
            if await self.store(record):
                break
        if overlap_s <= 0:
            await self.revoke(old.key_id)
        else:
            await self.redis.hset(
                schema.key_record(old.key_id), "expires_at", str(created + overlap_s)
            )
            await self.announce(old.key_id)
        return plaintext, record

    async def sync(self, key_id: str, version: int, fields: Mapping[str, str]) -> int:
        """Copy subscription state onto a key record if ``version`` is not older than what it
        holds; returns sync_key.lua's answer (1 written, 0 missing, -1 older, -2 revoked)."""
        args = [str(version), *(x for pair in fields.items() for x in pair)]
        result = int(await self._sync(keys=[schema.key_record(key_id)], args=args))
        if result == 1:
            await self.announce(key_id)
        return result

    async def owned(self, owner: str) -> list[str]:
        """Key ids issued for a subscription or customer."""
        return sorted(_s(k) for k in await self.redis.smembers(schema.owned_keys(owner)))


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
