"""Subscription state and event markers in Redis, and their fan-out onto the account and its
key records.

Each event's own writes are atomic: apply_state.lua compare-and-sets the subscription's state
together with the event's idempotency marker, in the subscription's Redis slot. Key records
(each in its key's own slot) then converge on that state through the versioned
sync_key.lua, which never moves a key backwards or brings back a revoked one. The event is
marked ``done`` only after the fan-out, so a failure in between answers 5xx and Stripe's retry
finishes the job with the same state.
"""

from __future__ import annotations

from typing import Any

from tollway import schema, scripts
from tollway.audit import AuditLog
from tollway.key_store import KeyStore
from tollway.scripts import Result
from webhook.subscriptions import SubState

# Stripe retries a failed delivery for up to 3 days in live mode; markers outlive that.
MARKER_TTL_S = 4 * 24 * 3600
APPLIED, DONE = "applied", "done"


class SubscriptionStates:
    def __init__(self, redis: Any, keys: KeyStore, audit: AuditLog | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.audit = audit if audit is not None else keys.audit
        self._apply = scripts.register(redis, "apply_state")

    async def state(self, subscription: str) -> SubState:
        """The subscription's state alone."""
        return SubState.from_redis(
            subscription, await self.redis.hgetall(schema.subscription_state(subscription))
        )

    async def read(self, subscription: str, event_id: str) -> tuple[SubState, str | None]:
        """The subscription's state and this event's marker (None, "applied" or "done")."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(schema.subscription_state(subscription))
            pipe.get(schema.event_marker(subscription, event_id))
            raw, marker = await pipe.execute()
        return SubState.from_redis(subscription, raw), marker

    async def compare_and_set(self, expected: SubState, new: SubState, event_id: str) -> Result:
        """Write ``new`` if the stored version is still ``expected.version``, marking the event:
        DONE, or MOVED_ON (read again), or ALREADY (the event was marked already)."""
        fields = [] if new == expected else [x for kv in new.to_redis().items() for x in kv]
        keys = [
            schema.subscription_state(expected.subscription),
            schema.event_marker(expected.subscription, event_id),
        ]
        args = [str(expected.version), str(MARKER_TTL_S), *fields]
        return scripts.result(await self._apply(keys=keys, args=args))

    async def fan_out(self, state: SubState, event_id: str) -> int:
        """Copy ``state`` onto the subscription's account (which exists from the first event,
        with or without a Checkout) and every key of it; returns how many keys were written.
        Each write is audited as the event's (``stripe:<event id>``)."""
        if state.status is None:
            return 0
        actor = f"stripe:{event_id}"
        account = await self.keys.sync_account(
            state.subscription, state.customer, state.version, state.account_fields()
        )
        if account is Result.DONE:
            await self.audit.record(
                actor, "synced", f"account:{state.subscription}", **state.account_fields()
            )
        written = 0
        for key_id in await self.keys.owned(state.subscription):
            synced = await self.keys.sync(key_id, state.version, state.key_fields())
            if synced is Result.DONE:
                written += 1
                await self.audit.record(actor, "synced", f"key:{key_id}", **state.key_fields())
        return written

    async def marker(self, subject: str, event_id: str) -> str | None:
        value = await self.redis.get(schema.event_marker(subject, event_id))
        return str(value) if value is not None else None

    async def mark_done(self, subject: str, event_id: str) -> None:
        await self.redis.set(schema.event_marker(subject, event_id), DONE, ex=MARKER_TTL_S)
