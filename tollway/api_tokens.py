"""Operator API tokens: what the management API authenticates its callers by.

A token looks like ``twa_<43 base62 chars>`` (apart from API keys' ``tw_live_``/``tw_test_``,
so neither is mistaken for the other in a log or a config) and is shown once, when made.
Redis keeps only its digest (``KeyHasher``: HMAC-SHA256 with the pepper), its name, its
scopes and when it was made and revoked; its id is the digest's first 16 hex digits, as a
key's is. Making and revoking a token is recorded in the audit log (tollway/audit.py).

Scopes, each the least a caller needs: ``keys:read``, ``keys:write``, ``accounts:read``,
``accounts:write``, ``usage:read``, ``verify``, ``audit:read``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from tollway import schema
from tollway.audit import AuditLog
from tollway.clock import Clock, WallClock
from tollway.compare import same
from tollway.errors import InvalidInput, NotFound
from tollway.keys import ALPHABET, BODY_BYTES, BODY_LEN, KeyHasher, b62encode

PREFIX = "twa_"
TOKEN_LEN = len(PREFIX) + BODY_LEN
SCOPES = frozenset(
    (
        "keys:read",
        "keys:write",
        "accounts:read",
        "accounts:write",
        "usage:read",
        "verify",
        "audit:read",
    )
)
NAME_MAX = 64


@dataclass(frozen=True)
class ApiToken:
    id: str
    name: str
    scopes: frozenset[str]
    created: int  # epoch s
    revoked: int = 0  # epoch s; 0 while live

    def allows(self, scope: str) -> bool:
        return not self.revoked and scope in self.scopes

    def public(self) -> dict[str, Any]:
        """What listing a token shows: never the token or its digest."""
        return {
            "id": self.id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "created": self.created,
            "revoked": self.revoked or None,
        }


def looks_like_token(text: str) -> bool:
    return (
        len(text) == TOKEN_LEN
        and text.startswith(PREFIX)
        and all(c in ALPHABET for c in text[len(PREFIX) :])
    )


class ApiTokens:
    def __init__(
        self, redis: Any, hasher: KeyHasher, audit: AuditLog, clock: Clock | None = None
    ) -> None:
        self.redis = redis
        self.hasher = hasher
        self.audit = audit
        self.clock = clock or WallClock()

    async def create(self, name: str, scopes: set[str], actor: str = "cli") -> tuple[str, ApiToken]:
        """A new token; (the plaintext, shown once, and its record). Raises InvalidInput for
        an empty or over-long name, no scope, or a scope that is not one of SCOPES."""
        if not name.strip() or len(name) > NAME_MAX or not name.isprintable():
            raise InvalidInput(f"a token needs a name of 1 to {NAME_MAX} printable characters")
        unknown = sorted(set(scopes) - SCOPES)
        if unknown or not scopes:
            raise InvalidInput(
                f"scopes must be some of {', '.join(sorted(SCOPES))}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        body = b62encode(int.from_bytes(secrets.token_bytes(BODY_BYTES), "big"), BODY_LEN)
        plaintext = PREFIX + body
        digest = self.hasher.digest(plaintext)
        token = ApiToken(
            self.hasher.key_id(digest), name.strip(), frozenset(scopes), self.clock.now()
        )
        await self.redis.hset(
            schema.api_token(token.id),
            mapping={
                "digest": digest,
                "name": token.name,
                "scopes": ",".join(sorted(token.scopes)),
                "created": token.created,
            },
        )
        await self.redis.sadd(schema.API_TOKENS, token.id)
        await self.audit.record(
            actor, "created", f"token:{token.id}", name=token.name, scopes=sorted(token.scopes)
        )
        return plaintext, token

    async def get(self, token_id: str) -> ApiToken:
        """Raises NotFound."""
        raw = await self.redis.hgetall(schema.api_token(token_id)) if _is_id(token_id) else {}
        if not raw:
            raise NotFound(f"no API token with id {token_id[:40]}")
        return _token(token_id, raw)

    async def listing(self) -> list[ApiToken]:
        """Every token, live and revoked, oldest first."""
        out = []
        for token_id in sorted(await self.redis.smembers(schema.API_TOKENS)):
            try:
                out.append(await self.get(str(token_id)))
            except NotFound:
                continue
        return sorted(out, key=lambda t: (t.created, t.id))

    async def revoke(self, token_id: str, actor: str = "cli") -> ApiToken:
        """Revoke for good (a revoked token authenticates nothing). Raises NotFound."""
        token = await self.get(token_id)
        if not token.revoked:
            await self.redis.hsetnx(schema.api_token(token_id), "revoked", self.clock.now())
            await self.audit.record(actor, "revoked", f"token:{token_id}")
        return await self.get(token_id)

    async def authenticate(self, presented: str) -> ApiToken | None:
        """The live token ``presented`` is, or None (malformed, unknown or revoked)."""
        first = self.lookup(presented)
        for token_id, digest in [first, *self.earlier_lookups(presented)] if first else []:
            token = live(token_id, digest, await self.redis.hgetall(schema.api_token(token_id)))
            if token is not None:
                return token
        return None

    def lookup(self, presented: str) -> tuple[str, str] | None:
        """(token id, digest) of a well-formed token under the key pepper in force, to read
        its record by; None for text that is not one."""
        if not looks_like_token(presented):
            return None
        digest = self.hasher.digest(presented)
        return self.hasher.key_id(digest), digest

    def earlier_lookups(self, presented: str) -> list[tuple[str, str]]:
        """(token id, digest) of a well-formed token under each earlier pepper: a token made
        before the pepper rotated keeps its id and works while its pepper is listed (tokens
        are not moved: make new ones before dropping the pepper)."""
        if not looks_like_token(presented):
            return []
        return [(self.hasher.key_id(d), d) for d in self.hasher.earlier_digests(presented)]


def live(token_id: str, digest: str, raw: dict[Any, Any]) -> ApiToken | None:
    """The token a record read for a presented token's ``digest`` holds, if it is that
    token's (the digests match) and live; else None."""
    if not raw or not same(str(raw.get("digest", "")), digest):
        return None
    token = _token(token_id, raw)
    return None if token.revoked else token


def _is_id(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)


def _token(token_id: str, raw: dict[Any, Any]) -> ApiToken:
    t = {str(k): str(v) for k, v in raw.items()}
    scopes = frozenset(s for s in t.get("scopes", "").split(",") if s)
    return ApiToken(
        token_id, t.get("name", ""), scopes, int(t.get("created") or 0), int(t.get("revoked") or 0)
    )
