"""Key records in Redis: write, look up and sync API keys' records.

A key's record lives in its account's slot (tollway/schema.py), found through the key's
directory entry. Its users: tollway/lifecycle.py, through which every change to who gets in
(create, rotate, suspend, resume, revoke) goes; the webhook service's subscription sync and
Checkout issuance; the account and usage reads of the CLI, the portal and metering. authz
reads records only through check.lua. Raises ``KeyNotFound`` for a key or id with no record,
``LifecycleError`` for a key its account cannot take.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from tollway import schema, scripts
from tollway.audit import AuditLog
from tollway.errors import LifecycleError, NotFound
from tollway.key_index import KeyIndex
from tollway.keys import KeyHasher, KeyMode, generate_key, looks_like_key_id, parse_key
from tollway.logs import fields
from tollway.records import DEFAULT_PERIOD_S, KeyRecord, KeyStatus
from tollway.scan import tags_by_suffix
from tollway.scripts import Result

log = logging.getLogger("tollway.key_store")

# How much of a key is kept to tell keys apart in listings ("tw_live_" and 4 of its 43 random
# characters: 24 of its 256 bits).
PREFIX_SHOWN = 12
# What a key copies from its subscription (webhook.subscriptions.SubState.key_fields).
SYNCED = ("status", "tier", "grace_until", "period_start", "period_end")
# Records read at once by ``records``.
READ_WIDTH = 25


class KeyNotFound(NotFound):
    """No key record matches the given key or key id."""


class KeyStore:
    def __init__(self, redis: Any, hasher: KeyHasher, audit: AuditLog | None = None) -> None:
        """``audit``: where the changes made through this store are recorded (the lifecycle,
        accounts and the webhook's own writes use it); None: an AuditLog with the default
        bounds (a service passes ``AuditLog.configured``)."""
        self.redis = redis
        self.hasher = hasher
        self.audit = audit if audit is not None else AuditLog(redis)
        self.index = KeyIndex(redis)
        self._create = scripts.register(redis, "create_record")
        self._open = scripts.register(redis, "open_key")
        self._sync_account = scripts.register(redis, "sync_account")
        self._sync = scripts.register(redis, "sync_key")
        self._move = scripts.register(redis, "move_key")

    def new_record(
        self, template: KeyRecord, mode: KeyMode = KeyMode.LIVE
    ) -> tuple[str, KeyRecord]:
        """A fresh plaintext key and its record, with everything else copied from ``template``."""
        plaintext = generate_key(mode)
        digest = self.hasher.digest(plaintext)
        record = replace(
            template,
            key_id=self.hasher.key_id(digest),
            hash=digest,
            pepper=self.hasher.fingerprint,
            mode=mode.value,
            prefix=plaintext[:PREFIX_SHOWN],
        )
        return plaintext, record

    async def write(self, record: KeyRecord) -> bool:
        """Write a new record whole; False if its key id is taken. Raises LifecycleError if
        its account takes no new key (``write_many``)."""
        (outcome,) = await self.write_many([record])
        if isinstance(outcome, LifecycleError):
            raise outcome
        return outcome

    async def write_many(self, records: Sequence[KeyRecord]) -> list[bool | LifecycleError]:
        """Write new records whole, each on its own, in a few pipelines whatever their number
        (owner sets and indexes, directory entries, then the records into their accounts);
        per record: True, False if its key id is taken (another account's key), or the
        LifecycleError its account refuses it with (an operator's hold, or a customer account
        on another tier), nothing of it left written. The indexes and the key's directory
        entry are written first, so a crash in between leaves at worst an entry for a key that
        does not exist (401, and nobody holds that key)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for record in records:
                for owner in _owners(record):
                    pipe.sadd(schema.owned_keys(owner), record.key_id)
                self.index.queue(pipe, record)
            await pipe.execute()
        entries = [([schema.key_directory(r.key_id)], _directory_entry(r)) for r in records]
        claimed = [
            scripts.result(reply) is Result.DONE
            for reply in await scripts.run_many(self._create, entries)
        ]
        # A key id whose entry was there already is ours only if it names this account (a
        # retry finishing an issuance that crashed after the entry).
        holders = iter(
            await self._directory_accounts(
                [r.key_id for r, c in zip(records, claimed, strict=True) if not c]
            )
        )
        ours = [
            c or text(next(holders) or "") == r.account
            for r, c in zip(records, claimed, strict=True)
        ]
        placing = [r for r, ok in zip(records, ours, strict=True) if ok]
        replies = iter(await scripts.run_many(self._open, [_open_call(r) for r in placing]))
        outcomes: list[bool | LifecycleError] = []
        undo: list[KeyRecord] = []
        for record, ok, new in zip(records, ours, claimed, strict=True):
            if not ok:
                outcomes.append(False)
                continue
            outcome = _placed(record, next(replies))
            if isinstance(outcome, LifecycleError) and new:
                undo.append(record)
            outcomes.append(outcome)
        if undo:
            async with self.redis.pipeline(transaction=False) as pipe:
                for record in undo:
                    pipe.delete(schema.key_directory(record.key_id))
                    for owner in _owners(record):
                        pipe.srem(schema.owned_keys(owner), record.key_id)
                await pipe.execute()
        return outcomes

    async def _directory_accounts(self, key_ids: Sequence[str]) -> list[Any]:
        """The account each key id's directory entry names (None where there is none)."""
        if not key_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key_id in key_ids:
                pipe.hget(schema.key_directory(key_id), "account")
            return list(await pipe.execute())

    async def create(
        self,
        tier: str,
        customer: str,
        mode: KeyMode = KeyMode.LIVE,
        subscription: str = "",
        now: int | None = None,
        details: KeyDetails | None = None,
    ) -> tuple[str, KeyRecord]:
        """Issue a new active key. Returns (plaintext, record); only the record is stored."""
        created = int(time.time()) if now is None else now
        schema.owned_keys(customer)  # raises ValueError for an id unfit for a key name
        template = KeyRecord.template(tier, customer, created, subscription)
        if details is not None:
            template = details.on(template)
        while True:
            plaintext, record = self.new_record(template, mode)
            # A 64-bit key id collision is astronomically unlikely; if it happens, draw again.
            if await self.write(record):
                return plaintext, record

    async def create_for_subscription(
        self,
        subscription: str,
        mode: KeyMode = KeyMode.LIVE,
        now: int | None = None,
        details: KeyDetails | None = None,
    ) -> tuple[str, KeyRecord]:
        """Issue a key bound to a subscription the webhook has seen (its account exists, with
        or without a Checkout): its tier, customer, billing status and period are the
        subscription's, and later events reach it like any key of the subscription. Raises
        KeyNotFound for a subscription tollway has no state for, ValueError for a canceled
        one."""
        schema.owned_keys(subscription)  # raises ValueError for an id unfit for a key name
        plan = await self.account_plan(subscription)
        if not plan.get("sync_version") or not plan.get("tier") or not plan.get("customer"):
            raise KeyNotFound(
                f"tollway has no state for subscription {subscription}: no webhook event for "
                "it with a known price has arrived (see Stripe's webhook deliveries)"
            )
        status = KeyStatus(plan.get("status") or "active")
        if status is KeyStatus.REVOKED:
            raise LifecycleError(f"subscription {subscription} is canceled; it takes no new keys")
        created = int(time.time()) if now is None else now
        template = replace(
            KeyRecord.template(plan["tier"], plan["customer"], created, subscription, status),
            grace_until=int(plan.get("grace_until") or 0),
            period_start=int(plan.get("period_start") or created),
            period_end=int(plan.get("period_end") or 0) or created + DEFAULT_PERIOD_S,
            sync_version=int(plan["sync_version"]),
        )
        if details is not None:
            template = details.on(template)
        while True:
            plaintext, record = self.new_record(template, mode)
            if await self.write(record):
                break
        # An event applied while the key was being written may have missed it: copy the
        # account's state again (sync_key.lua never moves a key backwards).
        now_plan = await self.account_plan(subscription)
        if now_plan.get("sync_version") != plan["sync_version"]:
            copied = {k: now_plan[k] for k in SYNCED if now_plan.get(k)}
            await self.sync(record.key_id, int(now_plan["sync_version"]), copied)
        return plaintext, record

    def key_id_of(self, key_or_id: str) -> str:
        """The key id for a plaintext key (as hashed under the pepper in force) or a key id.
        Raises KeyNotFound for anything else."""
        if looks_like_key_id(key_or_id):
            return key_or_id
        if parse_key(key_or_id) is not None:
            return self.hasher.key_id(self.hasher.digest(key_or_id))
        raise KeyNotFound("not a tollway key or key id")

    async def locate(self, key_id: str) -> tuple[str, str]:
        """(the key's record name, its account), found by the key's id, or by the id it has
        under a newer pepper than it was issued under (``move``). Raises KeyNotFound."""
        account, own_id = await self.redis.hmget(schema.key_directory(key_id), "account", "key_id")
        if not account:
            raise KeyNotFound(f"no key with id {key_id}")
        return schema.key_record(text(own_id or key_id), text(account)), text(account)

    async def get(self, key_or_id: str) -> KeyRecord:
        return (await self.find(key_or_id))[0]

    async def find(self, key_or_id: str) -> tuple[KeyRecord, str, str]:
        """(the key's record, the record's name, its account): ``get``
        with where it was found, for callers that then write there. A key issued under an
        earlier pepper is moved to the one in force (``move``). Raises KeyNotFound."""
        if looks_like_key_id(key_or_id):
            return await self._find(key_or_id, "")
        try:
            return await self._find(self.key_id_of(key_or_id), self.hasher.digest(key_or_id))
        except KeyNotFound:
            found = await self.move(key_or_id) if self.hasher.earlier else None
            if found is None:
                raise
        digest, key_id = found
        return await self._find(key_id, digest)

    async def _find(self, key_id: str, digest: str) -> tuple[KeyRecord, str, str]:
        """``find`` by id: the record, if it holds ``digest`` (any record for "")."""
        name, account = await self.locate(key_id)
        raw = await self.redis.hgetall(name)
        if not raw:
            raise KeyNotFound(f"no key with id {key_id}")
        record = KeyRecord.from_redis({text(k): text(v) for k, v in raw.items()})
        if digest and not holds(record, digest):
            raise KeyNotFound(f"no key with id {key_id}")
        return record, name, account

    async def move(self, key: str) -> tuple[str, str] | None:
        """Find ``key`` under an earlier pepper, and move it to the one in force: its record
        takes the new digest (keeping the one it was found by, for processes not yet given
        the new pepper), and the id the key has under the new pepper becomes a directory
        entry naming the key's own id, which the key keeps. Returns (the digest its record
        now holds for it, its key id), or None for no such key. Idempotent; a record moved
        meanwhile to a newer pepper than this process knows is found but left as it is."""
        digest = self.hasher.digest(key)
        for old in self.hasher.earlier_digests(key):
            try:
                record, name, _ = await self._find(self.hasher.key_id(old), old)
            except KeyNotFound:
                continue
            moved = scripts.result(
                await self._move(keys=[name], args=[old, digest, self.hasher.fingerprint])
            )
            if moved is Result.MISSING:  # changed since it was read: try no further
                return None
            if moved is Result.NEWER:
                return old, record.key_id
            entry = [*_directory_entry(record), "key_id", record.key_id]
            await self._create(keys=[schema.key_directory(self.hasher.key_id(digest))], args=entry)
            if moved is Result.DONE:
                await self.audit.record(
                    "pepper", "moved", f"key:{record.key_id}", pepper=self.hasher.fingerprint
                )
                log.info(
                    "key_moved_to_pepper",
                    extra=fields(key_id=record.key_id, pepper=self.hasher.fingerprint),
                )
            return digest, record.key_id
        return None

    async def account_plan(self, account: str) -> dict[str, str]:
        """The account's hash as text: its plan, bucket, quota and overrides ({} if none)."""
        raw = await self.redis.hgetall(schema.account_state(account))
        return {text(k): text(v) for k, v in raw.items()}

    async def announce(self, key_id: str) -> None:
        """Tell every authz process that the key's record changed, so that it drops what it
        holds for the key (a lease). Best effort: a lease expires on its own within its TTL."""
        try:
            await self.redis.publish(schema.KEY_CHANGES, key_id)
        except (RedisError, RedisClusterException, OSError) as exc:
            log.warning("key_change_not_announced", extra=fields(key_id=key_id, error=str(exc)))

    async def sync(self, key_id: str, version: int, fields: Mapping[str, str]) -> Result:
        """Copy subscription state onto a key record if ``version`` is not older than what it
        holds: DONE, or MISSING, NEWER or REVOKED (nothing written)."""
        args = [str(version), *(x for pair in fields.items() for x in pair)]
        try:
            name, _ = await self.locate(key_id)
        except KeyNotFound:
            return Result.MISSING
        result = scripts.result(await self._sync(keys=[name], args=args))
        if result is Result.DONE:
            await self.announce(key_id)
        return result

    async def sync_account(
        self, account: str, customer: str, version: int, fields: Mapping[str, str]
    ) -> Result:
        """Copy subscription state onto the account itself (its plan, status and period), even
        before it has a key: DONE, or NEWER (nothing written)."""
        args = [str(version), customer, account, *(x for pair in fields.items() for x in pair)]
        name = schema.account_state(account)
        result = scripts.result(await self._sync_account(keys=[name], args=args))
        if result is Result.DONE:
            await self.index.add_account(account)
        return result

    async def owned(self, owner: str) -> list[str]:
        """Key ids issued for a subscription or customer."""
        return sorted(text(k) for k in await self.redis.smembers(schema.owned_keys(owner)))

    async def records_of(self, owner: str) -> list[KeyRecord]:
        """The records of the keys issued for a subscription or customer, oldest first. (A
        customer's set also lists its subscriptions' keys: filter by ``account`` or
        ``customer`` for one account's.) An id whose record is missing (an issuance that
        never finished) is skipped."""
        records = await self.records(await self.owned(owner))
        return sorted(records, key=lambda r: (r.created, r.key_id))

    async def records(self, key_ids: list[str]) -> list[KeyRecord]:
        """The records of ``key_ids``, in order, read side by side (READ_WIDTH at a time, well
        within a client's connection pool); an id with no record (an issuance that never
        finished) is skipped."""
        found: list[KeyRecord | BaseException] = []
        for i in range(0, len(key_ids), READ_WIDTH):
            part = key_ids[i : i + READ_WIDTH]
            found += await asyncio.gather(*(self.get(k) for k in part), return_exceptions=True)
        out = []
        for item in found:
            if isinstance(item, KeyRecord):
                out.append(item)
            elif not isinstance(item, KeyNotFound):
                raise item
        return out

    async def pepper_counts(self) -> dict[str, int]:
        """Keys not revoked, by the fingerprint of the pepper their record is under (``""``:
        records made before fingerprints, under an unknown one). SCANs the whole keyspace."""
        found = await tags_by_suffix(self.redis, ("key",))
        peppers = {  # by key id: a key moved is found under two directory entries
            r.key_id: r.pepper
            for r in await self.records(sorted(found["key"]))
            if r.status is not KeyStatus.REVOKED
        }
        return dict(Counter(peppers.values()))

    async def reindex(self) -> int:
        """Put every key and account in the ordered indexes (tollway/key_index.py): for keys
        issued before they existed. SCANs the whole keyspace; idempotent. Returns the keys."""
        found = await tags_by_suffix(self.redis, ("key", "account"))
        for account in found["account"]:
            await self.index.add_account(account)
        n = 0
        for key_id in found["key"]:
            try:
                await self.index.add(await self.get(key_id))
                n += 1
            except (KeyNotFound, ValueError):
                continue
        return n


@dataclass(frozen=True)
class KeyDetails:
    """What an operator may say about a key besides its tier and owner (the management API):
    a name, whose it is in the operator's own system, metadata, and when it stops working."""

    name: str = ""
    external_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    expires_at: int = 0  # epoch s; 0: never

    def on(self, record: KeyRecord) -> KeyRecord:
        return replace(
            record,
            name=self.name,
            external_id=self.external_id,
            metadata=metadata_text(self.metadata),
            expires_at=self.expires_at,
        )


def holds(record: KeyRecord, digest: str) -> bool:
    """Whether ``record`` is the key whose digest is ``digest``: under the pepper it is kept
    under, or, while a pepper rotation rolls out, the one it was found under before."""
    return hmac.compare_digest(record.hash, digest) or (
        bool(record.hash_prev) and hmac.compare_digest(record.hash_prev, digest)
    )


def metadata_text(metadata: Mapping[str, str]) -> str:
    """Metadata as a record holds it: JSON text, keys sorted ("" for none)."""
    return json.dumps(dict(metadata), sort_keys=True, separators=(",", ":")) if metadata else ""


def text(v: bytes | str) -> str:
    """A Redis reply as text, whether the client decodes responses or not."""
    return v.decode() if isinstance(v, bytes) else v


def _owners(record: KeyRecord) -> list[str]:
    """The ids whose key sets name the key: its customer, and its subscription if any."""
    return [owner for owner in (record.customer, record.subscription) if owner]


def _directory_entry(record: KeyRecord) -> list[str]:
    """A key's directory entry: its account, and its tier (authz's first guess), and the
    external id authz passes to the upstream (it never changes)."""
    entry = ["account", record.account, "tier", record.tier]
    if record.external_id:
        entry += ["external_id", record.external_id]
    return entry


def _open_call(record: KeyRecord) -> scripts.Call:
    """open_key.lua for ``record``: the record into its account, with the account's own
    fields if it is new."""
    fields = [x for pair in record.to_redis().items() for x in pair]
    return (
        [schema.key_record(record.key_id, record.account), schema.account_state(record.account)],
        [
            record.tier,
            record.customer,
            record.subscription,
            str(record.period_start),
            str(record.period_end),
            *fields,
        ],
    )


def _placed(record: KeyRecord, reply: Any) -> bool | LifecycleError:
    """open_key.lua's reply: True (written), False (there already), or why the account
    refused the key."""
    account = record.account
    outcome = scripts.result(reply)
    if outcome is Result.ACCOUNT_HELD:
        return LifecycleError(
            f"account {account} is suspended by the operator; it takes no new key"
        )
    if outcome is Result.TIER_CONFLICT:
        tier = text(reply[1])
        return LifecycleError(
            f"account {account} is on tier {tier!r}; all keys of an account share its plan "
            f"(issue the key with --tier {tier}, or move the account with "
            f"`tollway accounts set-tier {account} TIER`)"
        )
    return outcome is Result.DONE
