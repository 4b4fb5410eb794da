"""Idempotency-Key on POST, as Stripe's: the same key with the same request answers the first
answer again, for 24 hours, and does nothing more; the same key with another request is a
409 ``idempotency_mismatch``; the same key while its first request still runs is a 409
``conflict`` (so two concurrent POSTs with one key create one key).

Keys are per token (one caller's key is no other caller's), kept in Redis only as their
SHA-256 with the request's fingerprint (the SHA-256 of method, path and body) and, once the
request is done, its status and body, sealed (tollway/sealing.py: an answer may hold a new
key, and Redis never holds one in plaintext) under the token and the Idempotency-Key. An answer is kept only once the operation ran: a 5xx
(Redis away) is not, so a retry runs the operation again, and a request refused before its
handler (bad token, bad body) keeps nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from api.errors import ApiError
from tollway import schema, sealing

KEEP_S = 24 * 3600
# How long a request may hold its key before another may take it over (a process that
# died mid-request leaves the key held for no longer than this).
RUNNING_S = 60
KEY_MAX = 255


@dataclass(frozen=True)
class Stored:
    status: int
    body: str


def fingerprint(method: str, path: str, body: bytes) -> str:
    h = hashlib.sha256(f"{method} {path}\n".encode())
    h.update(body)
    return h.hexdigest()


class Idempotency:
    def __init__(self, redis: Any, peppers: Sequence[bytes]) -> None:
        """``peppers``: the key peppers honoured (KeyHasher.peppers); answers are sealed with
        the first, and opened with any."""
        self.redis = redis
        self.peppers = peppers

    @staticmethod
    def check_key(key: str) -> None:
        if not 1 <= len(key) <= KEY_MAX or not key.isprintable():
            raise ApiError(
                400,
                "invalid_request",
                f"Idempotency-Key must be 1 to {KEY_MAX} printable characters",
                "Idempotency-Key",
            )

    def _name(self, token_id: str, key: str) -> str:
        return schema.idempotency(token_id, hashlib.sha256(key.encode()).hexdigest())

    async def begin(self, token_id: str, key: str, fp: str) -> Stored | None:
        """Take ``key`` for a request with fingerprint ``fp``: None, and the caller runs it;
        or the stored answer to replay. Raises ApiError (409) for a mismatch or a request
        with the same key still running."""
        name = self._name(token_id, key)
        running = json.dumps({"fp": fp})
        if await self.redis.set(name, running, nx=True, ex=RUNNING_S):
            return None
        raw = await self.redis.get(name)
        if raw is None:  # expired just now: take it
            if await self.redis.set(name, running, nx=True, ex=RUNNING_S):
                return None
            raw = await self.redis.get(name) or running
        held = json.loads(raw)
        if held.get("fp") != fp:
            raise ApiError(
                409,
                "idempotency_mismatch",
                "this Idempotency-Key was used with another request; use a new key",
                "Idempotency-Key",
            )
        if "status" not in held:
            raise ApiError(
                409, "conflict", "a request with this Idempotency-Key is still running; retry"
            )
        try:
            body = sealing.unseal(str(held["body"]), _context(token_id, key), self.peppers, _json)
        except ValueError:  # sealed under a pepper no longer listed; running it again could
            raise ApiError(  # do twice what was asked once
                409,
                "idempotency_unreadable",
                "the answer kept for this Idempotency-Key was sealed under a key pepper no "
                "longer in force; check what the first request did, then use a new key",
                "Idempotency-Key",
            ) from None
        return Stored(int(held["status"]), body)

    async def finish(self, token_id: str, key: str, fp: str, status: int, body: str) -> None:
        """Keep the answer (a 5xx is forgotten instead, so that a retry runs again)."""
        name = self._name(token_id, key)
        if status >= 500:
            await self.redis.delete(name)
            return
        sealed = sealing.seal(body, _context(token_id, key), self.peppers[0])
        await self.redis.set(
            name, json.dumps({"fp": fp, "status": status, "body": sealed}), ex=KEEP_S
        )

    async def forget(self, token_id: str, key: str) -> None:
        """Release the key of a request refused before it ran (bad body): nothing kept."""
        await self.redis.delete(self._name(token_id, key))


def _context(token_id: str, key: str) -> str:
    return f"idempotency:{token_id}:{key}"


def _json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
