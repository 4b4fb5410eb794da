"""One-time sign-in links: issued for an address, sent by email, good once for 15 minutes.

A link carries a random token; Redis keeps only its SHA-256 (a leaked dump holds no usable
link), with the customer it signs in as, and expires it. Redeeming is GETDEL: a second use, or
one after the TTL, finds nothing. Asking is rate limited per address and per client IP within
the same TTL, so the portal cannot be used to flood an inbox or enumerate addresses.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from tollway import schema

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{1,63}$")


def normalize(address: str) -> str | None:
    """The address as compared and stored (trimmed, lower-cased), or None if it is not one."""
    text = address.strip().lower()
    return text if len(text) <= 320 and EMAIL.match(text) else None


def digest(text: str) -> str:
    """SHA-256, hex: how tokens and addresses are named in Redis (never in the clear)."""
    return hashlib.sha256(text.encode()).hexdigest()


class SignInLinks:
    def __init__(self, redis: Any, ttl_s: int, per_address: int, per_ip: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.per_address = per_address
        self.per_ip = per_ip

    async def allowed(self, address: str, ip: str) -> bool:
        """Count this request against the address's and the IP's limits; False past either."""
        for kind, who, limit in (("address", address, self.per_address), ("ip", ip, self.per_ip)):
            name = schema.signin_rate(kind, digest(who))
            count = int(await self.redis.incr(name))
            if count == 1:
                await self.redis.expire(name, self.ttl_s)
            if count > limit:
                return False
        return True

    async def issue(self, customer: str) -> str:
        """A new link token that signs in as ``customer``."""
        token = secrets.token_urlsafe(32)
        await self.redis.set(schema.signin_token(digest(token)), customer, ex=self.ttl_s)
        return token

    async def redeem(self, token: str) -> str | None:
        """The customer the token signs in as, once; None if unknown, used or expired."""
        if not token or len(token) > 128:
            return None
        found = await self.redis.getdel(schema.signin_token(digest(token)))
        return str(found) if found else None
