"""The one lifecycle of keys and accounts: every change to who gets in goes through here.

The CLI, the portal and the webhook service (and the management API) call these operations;
none of them writes a key's status, hold or expiry itself. Each change is recorded here, once:
in the audit log with its actor (tollway/audit.py; ``acting_as`` names who acts), in the
service's log (``key_changed`` and ``account_changed``), and announced to every authz process
so that it drops what it holds for the key (a lease).

The rules, each kept by a Lua script so that no race can break it:
- revoked and expired (a rotated key past its overlap) are final: such a key cannot be
  rotated, suspended, resumed or extended (``records.key_state`` says which state a key is in);
- a key that was rotated already cannot be rotated again (that would make one key three, or
  extend its overlap): rotate its successor;
- a rotated key's successor inherits its hold;
- an operator's hold on an account answers every key of it 402 (check.lua), and the account
  takes no new key and rotates none until it is lifted.

Raises ``KeyNotFound`` for a key or account tollway does not know, ``LifecycleError`` (a
ValueError) for a change the rules refuse, with a message for the person who asked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from tollway import schema, scripts
from tollway.audit import AuditLog
from tollway.clock import Clock
from tollway.errors import InvalidInput, LifecycleError
from tollway.key_store import KeyDetails, KeyNotFound, KeyStore, metadata_text, text
from tollway.keys import KeyMode
from tollway.logs import fields
from tollway.records import FINAL, KeyRecord, KeyState, KeyStatus, key_state
from tollway.scripts import Result

log = logging.getLogger("tollway.lifecycle")

OPERATOR_HOLD = "operator"


class Lifecycle:
    def __init__(
        self, keys: KeyStore, clock: Clock, audit: AuditLog | None = None, actor: str = "cli"
    ) -> None:
        """``audit``: where changes are recorded (None: the KeyStore's); ``actor``: who they
        are recorded as."""
        self.keys = keys
        self.clock = clock
        self.audit = audit if audit is not None else keys.audit
        self.actor = actor
        redis = keys.redis
        self._set_status = scripts.register(redis, "set_status")
        self._set_account_hold = scripts.register(redis, "set_account_hold")
        self._rotate = scripts.register(redis, "rotate_key")
        self._update = scripts.register(redis, "update_key")

    def acting_as(self, actor: str) -> Lifecycle:
        """The same lifecycle, its changes recorded as made by ``actor``."""
        return Lifecycle(self.keys, self.clock, self.audit, actor)

    # What a key is now.

    async def account_hold(self, account: str) -> str:
        """The operator's hold on ``account`` ("" for none)."""
        if not account:
            return ""
        return text(await self.keys.redis.hget(schema.account_state(account), "hold") or "")

    async def state(self, record: KeyRecord) -> KeyState:
        """What check.lua would make of the key now, as far as its lifecycle goes."""
        hold = await self.account_hold(record.account)
        return key_state(record, hold, self.clock.now())

    async def states(self, records: list[KeyRecord]) -> list[tuple[KeyRecord, KeyState]]:
        """Each of ``records`` with its state now (one read per account)."""
        holds = {a: await self.account_hold(a) for a in {r.account for r in records}}
        now = self.clock.now()
        return [(r, key_state(r, holds[r.account], now)) for r in records]

    async def listing(self, records: list[KeyRecord]) -> list[dict[str, object]]:
        """``records`` as ``tollway keys list`` shows them, each with its state now."""
        return [r.listing(state) for r, state in await self.states(records)]

    # Issuing.

    async def create(
        self,
        tier: str,
        customer: str,
        mode: KeyMode = KeyMode.LIVE,
        details: KeyDetails | None = None,
    ) -> tuple[str, KeyRecord]:
        """A new active key on the customer's account. Refused while the account is held, or
        with an expiry that is not in the future."""
        now = self.clock.now()
        _check_expiry(details.expires_at if details is not None else 0, now)
        plaintext, record = await self.keys.create(tier, customer, mode, now=now, details=details)
        await self._audit(record.key_id, "created", account=record.account, tier=tier)
        return plaintext, record

    async def create_for_subscription(
        self, subscription: str, mode: KeyMode = KeyMode.LIVE, details: KeyDetails | None = None
    ) -> tuple[str, KeyRecord]:
        """A new key on a subscription's account (``KeyStore.create_for_subscription``)."""
        now = self.clock.now()
        _check_expiry(details.expires_at if details is not None else 0, now)
        plaintext, record = await self.keys.create_for_subscription(
            subscription, mode, now=now, details=details
        )
        await self._audit(record.key_id, "created", account=record.account, tier=record.tier)
        return plaintext, record

    async def rotate(self, key_or_id: str, overlap_s: int) -> tuple[str, KeyRecord]:
        """Issue a successor (same account, tier and hold); the old key keeps working for
        ``overlap_s`` seconds (0: revoked at once), then is expired for good. Returns the new
        (plaintext, record)."""
        old, name, account = await self.keys.find(key_or_id)
        now = self.clock.now()
        self._refuse_final(old, await self.account_hold(account), now, "rotated")
        if old.successor:
            raise LifecycleError(
                f"key {old.key_id} was rotated already, to {old.successor}; rotate that key"
            )
        # The hold is copied again by rotate_key.lua, as it is when the handover runs. The
        # successor keeps the key's name, external id, metadata and expiry.
        template = replace(old, created=now, last_used=0, successor="")
        while True:
            plaintext, new = self.keys.new_record(template, KeyMode(old.mode))
            if await self.keys.write(new):
                break
        ends = str(now + overlap_s) if overlap_s > 0 else "0"
        keys = [name, schema.key_record(new.key_id, account), schema.account_state(account)]
        reply = await self._rotate(keys=keys, args=[str(now), ends, new.key_id])
        if scripts.result(reply) is not Result.DONE:
            # The old key changed while the new one was written: the new one must not live.
            await self._set_status(keys=[keys[1]], args=[KeyStatus.REVOKED.value])
            raise LifecycleError(
                f"key {old.key_id} changed meanwhile ({_refusal(reply)}); nothing was rotated"
            )
        await self.keys.announce(old.key_id)
        await self._audit(old.key_id, "rotated", successor=new.key_id, overlap_s=overlap_s)
        return plaintext, await self.keys.get(new.key_id)

    # Changing one key.

    async def update(
        self,
        key_or_id: str,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        expires_at: int | None = None,
    ) -> KeyRecord:
        """Change what the operator says about a key: its name, its metadata (replaced
        whole), its expiry (0: never; else in the future). None leaves a field as it is. A
        final key changes no more; a rotated key's expiry is its overlap's end and stays."""
        record, name_in_redis, _ = await self.keys.find(key_or_id)
        now = self.clock.now()
        _check_expiry(expires_at, now)
        changes: dict[str, str] = {}
        if name is not None:
            changes["name"] = name
        if metadata is not None:
            changes["metadata"] = metadata_text(metadata)
        if expires_at is not None:
            changes["expires_at"] = str(expires_at)
        if not changes:
            return record
        pairs = [x for pair in changes.items() for x in pair]
        result = scripts.result(await self._update(keys=[name_in_redis], args=[str(now), *pairs]))
        if result is Result.MISSING:
            raise KeyNotFound(f"no key with id {record.key_id}")
        if result is Result.ROTATED:
            raise LifecycleError(
                f"key {record.key_id} was rotated: its expiry is the end of its overlap"
            )
        if result is not Result.DONE:
            raise LifecycleError(
                f"key {record.key_id} is {result.name.lower()}; that is final, so it cannot be "
                "updated"
            )
        shown = {k: (metadata if k == "metadata" else v) for k, v in changes.items()}
        await self.keys.announce(record.key_id)
        await self._audit(record.key_id, "updated", **shown)
        return await self.keys.get(record.key_id)

    async def revoke(self, key_or_id: str) -> KeyRecord:
        """Revoke for good (401). Revoking a revoked key changes, and records, nothing more."""
        record, name, _ = await self.keys.find(key_or_id)
        if record.status is KeyStatus.REVOKED:
            return record
        result = scripts.result(await self._set_status(keys=[name], args=[KeyStatus.REVOKED.value]))
        if result is Result.MISSING:
            raise KeyNotFound(f"no key with id {record.key_id}")
        return await self._changed(record.key_id, "revoked")

    async def suspend(self, key_or_id: str) -> KeyRecord:
        """An operator's hold (402), kept apart from the billing status so that a later
        payment webhook cannot lift it."""
        return await self._hold(key_or_id, OPERATOR_HOLD, "suspended")

    async def resume(self, key_or_id: str) -> KeyRecord:
        """Lift an operator's hold on the key (its account's, if any, stays)."""
        return await self._hold(key_or_id, "", "resumed")

    async def _hold(self, key_or_id: str, hold: str, what: str) -> KeyRecord:
        record, name, _ = await self.keys.find(key_or_id)
        reply = await self._update(keys=[name], args=[str(self.clock.now()), "hold", hold])
        result = scripts.result(reply)
        if result is Result.MISSING:
            raise KeyNotFound(f"no key with id {record.key_id}")
        if result is not Result.DONE:
            final = result.name.lower()  # revoked or expired
            raise LifecycleError(
                f"key {record.key_id} is {final}; that is final, so it cannot be {what}"
            )
        return await self._changed(record.key_id, what)

    # Changing a whole account.

    async def suspend_account(self, account: str) -> int:
        """Hold every key of the account (402), its future keys too. Returns its key count."""
        return await self._hold_account(account, OPERATOR_HOLD, "suspended")

    async def resume_account(self, account: str) -> int:
        """Lift the account's hold (holds on single keys stay). Returns its key count."""
        return await self._hold_account(account, "", "resumed")

    async def _hold_account(self, account: str, hold: str, what: str) -> int:
        name = schema.account_state(account)  # raises ValueError for an id unfit for a key name
        if scripts.result(await self._set_account_hold(keys=[name], args=[hold])) is Result.MISSING:
            raise KeyNotFound(f"no account {account}")
        key_ids = await self.keys.owned(account)
        for key_id in key_ids:
            await self.keys.announce(key_id)
        log.info("account_changed", extra=fields(account=account, change=what))
        await self.audit.record(self.actor, what, f"account:{account}")
        return len(key_ids)

    # Shared.

    def _refuse_final(self, record: KeyRecord, account_hold: str, now: int, what: str) -> None:
        state = key_state(record, account_hold, now)
        if state in FINAL:
            raise LifecycleError(
                f"key {record.key_id} is {state}; that is final, so it cannot be {what}"
            )
        if account_hold:
            raise LifecycleError(
                f"account {record.account} is suspended by the operator; its keys cannot be {what}"
            )

    async def _changed(self, key_id: str, what: str) -> KeyRecord:
        await self.keys.announce(key_id)
        await self._audit(key_id, what)
        return await self.keys.get(key_id)

    async def _audit(self, key_id: str, what: str, **more: object) -> None:
        log.info("key_changed", extra=fields(key_id=key_id, change=what, actor=self.actor, **more))
        await self.audit.record(self.actor, what, f"key:{key_id}", **more)


def _check_expiry(expires_at: int | None, now: int) -> None:
    """An expiry an operator sets is 0 or None (none) or in the future."""
    if expires_at and expires_at <= now:
        raise InvalidInput("expires_at is not in the future", "expires_at")


def _refusal(reply: list[object]) -> str:
    result = scripts.result(reply)
    if result is Result.ROTATED:
        return f"rotated to {text(reply[1])}"  # type: ignore[arg-type]
    return {Result.MISSING: "gone", Result.ACCOUNT_HELD: "account suspended"}.get(
        result, result.name.lower()
    )
