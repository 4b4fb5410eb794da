"""Signing up for a free tier without Stripe: an address, a confirmation link, then a key.

Asking stores only the link token's SHA-256 with the tier and address, for the sign-in TTL.
Opening the link only shows what it confirms (``peek``), so a mail scanner that follows it
uses nothing; the page's POST confirms. Confirming is GETDEL (one use) and then, for the
address's one free customer (``free_`` and random; ``tw:portal:free:<sha256(address)>``
names it, SET NX so two confirmations race to one), the first key. An address that signed up before gets no second free account: its link
signs it in instead, which is what a sign-in link would do. A confirmation that stopped
half-way (the customer named, no key yet) is finished by the next one.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from portal.signin import TOKEN, digest
from tollway import schema
from tollway.errors import InvalidInput
from tollway.key_store import text
from tollway.lifecycle import Lifecycle
from tollway.records import KeyRecord
from tollway.tiers import TierTable


@dataclass(frozen=True)
class Confirmed:
    customer: str
    api_key: str  # "" when the address had signed up already (no new key)
    record: KeyRecord | None


class FreeSignups:
    def __init__(self, redis: Any, lifecycle: Lifecycle, ttl_s: int) -> None:
        """``lifecycle``: the one lifecycle a confirmed sign-up's key is issued through, as
        the new customer (``customer:<id>`` in the audit log)."""
        self.redis = redis
        self.lifecycle = lifecycle
        self.keys = lifecycle.keys
        self.ttl_s = ttl_s

    async def ask(self, address: str, tier: str) -> str:
        """A confirmation token for ``address`` (normalized) on the free ``tier``."""
        token = secrets.token_urlsafe(32)
        value = json.dumps({"address": address, "tier": tier})
        await self.redis.set(schema.signup_token(digest(token)), value, ex=self.ttl_s)
        return token

    async def peek(self, token: str) -> tuple[str, str] | None:
        """(address, tier) the token would confirm, without using it; None if unknown."""
        if not TOKEN.match(token):
            return None
        return _asked(await self.redis.get(schema.signup_token(digest(token))))

    async def customer_of(self, address: str) -> str | None:
        found = await self.redis.get(schema.free_customer(digest(address)))
        return text(found) if found else None

    async def confirm(self, token: str, table: TierTable) -> Confirmed | None:
        """The sign-up behind ``token``, once; None if unknown, used or expired. Raises
        ValueError if its tier is no longer open for free sign-up."""
        if not TOKEN.match(token):
            return None
        asked = _asked(await self.redis.getdel(schema.signup_token(digest(token))))
        if asked is None:
            return None
        address, tier_name = asked
        existing = await self.customer_of(address)
        if existing and await self.keys.owned(existing):
            return Confirmed(existing, "", None)
        tier = table.get(tier_name)
        if tier is None or not tier.free_signup:
            raise InvalidInput(f"the {tier_name} plan is no longer open for sign-up")
        index = schema.free_customer(digest(address))
        await self.redis.set(index, "free_" + secrets.token_hex(12), nx=True)
        customer = text(await self.redis.get(index))
        if await self.keys.owned(customer):  # a second confirmation won the race
            return Confirmed(customer, "", None)
        await self.redis.hset(
            schema.profile(customer),
            mapping={"email": address, "tier": tier.name, "created": str(int(time.time()))},
        )
        acting = self.lifecycle.acting_as(f"customer:{customer}")
        plaintext, record = await acting.create(tier.name, customer)
        return Confirmed(customer, plaintext, record)

    async def email_of(self, customer: str) -> str | None:
        """A free customer's address (None for a Stripe customer: Stripe has theirs)."""
        if not customer.startswith("free_"):
            return None
        found = await self.redis.hget(schema.profile(customer), "email")
        return text(found) if found else None


def _asked(raw: bytes | str | None) -> tuple[str, str] | None:
    """(address, tier) of a stored sign-up request; None if there is none, or it is unreadable."""
    if not raw:
        return None
    try:
        asked = json.loads(text(raw))
        return str(asked["address"]), str(asked["tier"])
    except (ValueError, KeyError, TypeError):
        return None
