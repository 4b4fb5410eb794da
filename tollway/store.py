"""Key records in Redis: issue, look up and change the status of API keys.

Used by the CLI now and by the webhook service later; authz only reads records via check.lua.
Raises ``KeyNotFound`` for a key or id with no record.
"""

from __future__ import annotations

import time
from typing import Any

from tollway import schema, scripts
from tollway.keys import KeyHasher, KeyMode, generate_key, looks_like_key_id, parse_key
from tollway.records import DEFAULT_PERIOD_S, KeyRecord, KeyStatus


class KeyNotFound(LookupError):
    """No key record matches the given key or key id."""


class KeyStore:
    def __init__(self, redis: Any, hasher: KeyHasher) -> None:
        self.redis = redis
        self.hasher = hasher
        self._set_status = scripts.register(redis, "set_status")
        self._create = scripts.register(redis, "create_record")

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
        while True:
            plaintext = generate_key(mode)
            digest = self.hasher.digest(plaintext)
            record = KeyRecord(
                key_id=self.hasher.key_id(digest),
                hash=digest,
                status=KeyStatus.ACTIVE,
                tier=tier,
                customer=customer,
                created=created,
                mode=mode.value,
                subscription=subscription,
                period_start=created,
                period_end=created + DEFAULT_PERIOD_S,
            )
            fields = [x for pair in record.to_redis().items() for x in pair]
            # A 64-bit key id collision is astronomically unlikely; if it happens, draw again.
            if await self._create(keys=[schema.key_record(record.key_id)], args=fields):
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
        if not looks_like_key_id(key_or_id) and record.hash != self.hasher.digest(key_or_id):
            raise KeyNotFound(f"no key with id {key_id}")
        return record

    async def set_status(self, key_or_id: str, status: KeyStatus) -> KeyRecord:
        """Move an existing key to ``status``; returns the new record.

        Raises KeyNotFound, or ValueError for a revoked key: revocation is final, and
        set_status.lua enforces that atomically.
        """
        record = await self.get(key_or_id)
        changed = await self._set_status(
            keys=[schema.key_record(record.key_id)], args=[status.value]
        )
        if changed == 0:
            raise KeyNotFound(f"no key with id {record.key_id}")
        if changed == -1:
            raise ValueError(f"key {record.key_id} is revoked; revocation is final")
        return await self.get(record.key_id)


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
