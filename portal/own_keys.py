"""What a signed-in customer may do to keys: only to their own, checked on the server.

Every action takes an id from a form, and acts only if that key (or account) was issued for
the session's customer; anything else is NotYours, whatever the id names.
"""

from __future__ import annotations

from tollway.errors import InvalidInput, LifecycleError, Refused
from tollway.key_store import KeyNotFound
from tollway.lifecycle import Lifecycle
from tollway.records import FINAL, KeyRecord, key_state

OVERLAPS_S = {"0": 0, "3600": 3600, "86400": 86400}  # the rotate form's choices


class NotYours(Refused):
    """The id names no key or account of this customer."""


class OwnKeys:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.keys = lifecycle.keys

    async def record(self, customer: str, key_id: str) -> KeyRecord:
        if key_id not in await self.keys.owned(customer):
            raise NotYours(key_id)
        try:
            record = await self.keys.get(key_id)
        except (KeyNotFound, ValueError):
            raise NotYours(key_id) from None
        if record.customer != customer:
            raise NotYours(key_id)
        return record

    async def create(self, customer: str, account: str) -> tuple[str, KeyRecord]:
        """Another key on one of the customer's accounts (its tier, limits and quota). Refused
        while the operator holds the account or any of its keys: a customer cannot issue
        themselves a way around a suspension."""
        mine = [r for r in await self.keys.records_of(customer) if r.customer == customer]
        now = self.lifecycle.clock.now()
        live = [r for r in mine if r.account == account and key_state(r, "", now) not in FINAL]
        if not live:
            raise NotYours(account)
        if any(r.hold for r in live):
            raise LifecycleError("a key of this account is suspended; contact support to lift it")
        acting = self._as(customer)
        if live[0].subscription:
            return await acting.create_for_subscription(live[0].subscription)
        return await acting.create(live[0].tier, customer)

    async def rotate(self, customer: str, key_id: str, overlap: str) -> tuple[str, KeyRecord]:
        if overlap not in OVERLAPS_S:
            raise InvalidInput(f"overlap must be one of {', '.join(OVERLAPS_S)} seconds")
        await self.record(customer, key_id)
        return await self._as(customer).rotate(key_id, OVERLAPS_S[overlap])

    async def revoke(self, customer: str, key_id: str) -> None:
        await self.record(customer, key_id)
        await self._as(customer).revoke(key_id)

    def _as(self, customer: str) -> Lifecycle:
        """The lifecycle, its changes recorded as the signed-in customer's."""
        return self.lifecycle.acting_as(f"customer:{customer}")
