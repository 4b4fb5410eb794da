"""One-time sign-in links: issued for an address, sent by email, good once for 15 minutes.

A link carries a random token; Redis keeps only its SHA-256 (a leaked dump holds no usable
link), with the customer it signs in as and the address it was sent to, and expires it.
Opening the link only shows which address it signs in as (``peek``): a mail scanner that
follows it uses nothing, and a person sent someone else's link sees whose it is. The page's
POST redeems it with GETDEL: a second use, or one after the TTL, finds nothing. Asking is rate
limited per address and per client IP within the same TTL (tollway/throttle.py), so the portal
cannot be used to flood an inbox or enumerate addresses.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any

from tollway import schema
from tollway.throttle import Throttle

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{1,63}$")


def normalize(address: str) -> str | None:
    """The address as compared and stored (trimmed, lower-cased), or None if it is not one."""
    text = address.strip().lower()
    return text if len(text) <= 320 and EMAIL.match(text) else None


def digest(text: str) -> str:
    """SHA-256, hex: how tokens and addresses are named in Redis (never in the clear)."""
    return hashlib.sha256(text.encode()).hexdigest()


TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def token_or_dash(token: str) -> str:
    """``token`` if it has a link token's shape, else "-" (kept in a cookie: never junk)."""
    return token if TOKEN.match(token) else "-"


class SignInLinks:
    def __init__(self, redis: Any, ttl_s: int, per_address: int, per_ip: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.per_address = per_address
        self.per_ip = per_ip
        self.throttle = Throttle(redis, ttl_s)

    async def allowed(self, address: str, ip: str) -> bool:
        """Count this request against the address's and the IP's limits; False past either."""
        by_address = await self.throttle.hit("signin_address", address, self.per_address)
        return await self.throttle.hit("signin_ip", ip, self.per_ip) and by_address

    async def issue(self, customer: str, address: str) -> str:
        """A new link token that signs in as ``customer``, sent to ``address``."""
        token = secrets.token_urlsafe(32)
        record = json.dumps({"customer": customer, "address": address})
        await self.redis.set(schema.signin_token(digest(token)), record, ex=self.ttl_s)
        return token

    async def peek(self, token: str) -> tuple[str, str] | None:
        """(customer, address) the token signs in as, without using it; None if unknown."""
        if not TOKEN.match(token):
            return None
        return _read(await self.redis.get(schema.signin_token(digest(token))))

    async def redeem(self, token: str) -> str | None:
        """The customer the token signs in as, once; None if unknown, used or expired."""
        if not TOKEN.match(token):
            return None
        found = _read(await self.redis.getdel(schema.signin_token(digest(token))))
        return found[0] if found else None


def _read(raw: bytes | str | None) -> tuple[str, str] | None:
    if not raw:
        return None
    try:
        record = json.loads(raw)
        return str(record["customer"]), str(record["address"])
    except (ValueError, KeyError, TypeError):
        return None
