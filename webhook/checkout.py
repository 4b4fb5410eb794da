"""One key per completed checkout session, whichever of the webhook and the claim comes first.

``issue`` reserves the key in the session's record (reserve_checkout.lua: first writer wins),
then makes sure the key record exists and matches the subscription's current state. It is
idempotent, so a retried webhook or a racing claim ends with the same single key.
``claim`` hands out the sealed plaintext once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tollway import schema, scripts, sealing
from tollway.audit import AuditLog
from tollway.errors import Refused
from tollway.key_store import KeyStore
from tollway.keys import KeyMode, parse_key
from tollway.records import KeyRecord, KeyStatus
from tollway.scripts import Result
from webhook.subscriptions import SubState

PAID = ("paid", "no_payment_required")


@dataclass(frozen=True)
class Claimed:
    api_key: str
    key_id: str
    tier: str
    customer: str


class ClaimGone(Refused):
    """The key was claimed already, or its claim window has passed."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Checkouts:
    def __init__(
        self,
        redis: Any,
        keys: KeyStore,
        claim_ttl_s: int,
        audit: AuditLog | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.audit = audit if audit is not None else keys.audit
        self.claim_ttl_s = claim_ttl_s
        self._reserve = scripts.register(redis, "reserve_checkout")
        self._claim = scripts.register(redis, "claim")

    async def issue(
        self,
        session: str,
        customer: str,
        subscription: str,
        tier: str,
        payment_status: str,
        state: SubState,
        now: int | None = None,
        actor: str = "",
    ) -> str:
        """Make sure ``session`` has its one key; returns its key id. The issuance is audited
        as ``actor`` (default ``checkout:<session>``) by the call that writes the record."""
        created = int(time.time()) if now is None else now
        status = KeyStatus.ACTIVE if payment_status in PAID else KeyStatus.PENDING
        template = KeyRecord.template(tier, customer, created, subscription, status)
        plaintext, record = self.keys.new_record(template, KeyMode.LIVE)
        sealed = sealing.seal(plaintext, session, self.keys.hasher.pepper)
        name = schema.checkout_record(session)
        fields = [x for kv in record.to_redis().items() for x in kv]
        key_id = await self._reserve(
            keys=[name, schema.checkout_claim(session)],
            args=[sealed, str(self.claim_ttl_s), *fields],
        )
        # Whoever reserved first, (re)write the record from the session's copy: this finishes an
        # issuance that crashed between reserving and writing.
        raw = await self.redis.hgetall(name)
        winner = KeyRecord.from_redis({k: v for k, v in raw.items() if k != "claimed"})
        if await self.keys.write(winner):
            await self.audit.record(
                actor or f"checkout:{session}",
                "created",
                f"key:{winner.key_id}",
                account=winner.account,
                tier=tier,
            )
        if state.status is not None:
            await self.keys.sync(key_id, state.version, state.key_fields())
        return str(key_id)

    async def claim(self, session: str) -> Claimed | None:
        """The plaintext key for ``session``, once. None if no key was issued for it yet.
        Raises ClaimGone("already_claimed", "claim_expired" or "claim_unreadable")."""
        keys = [schema.checkout_record(session), schema.checkout_claim(session)]
        reply = await self._claim(keys=keys, args=[])
        result = scripts.result(reply)
        if result is Result.MISSING:
            return None
        if result is Result.ALREADY:
            raise ClaimGone("already_claimed")
        if result is Result.EXPIRED:
            raise ClaimGone("claim_expired")
        sealed, key_id, tier, customer = (str(x) for x in reply[1:5])
        try:  # under any pepper still honoured: one rotated in meanwhile does not lose it
            api_key = sealing.unseal(sealed, session, self.keys.hasher.peppers, _is_key)
        except ValueError:  # sealed under a pepper no longer listed
            raise ClaimGone("claim_unreadable") from None
        return Claimed(api_key, key_id, tier, customer)


def _is_key(text: str) -> bool:
    return parse_key(text) is not None
