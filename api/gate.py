"""Who may call the management API, and how often: the operator token (401) and its rate
(429), checked before anything else a request asks.

Both are a read and a count in Redis on every call, verify's included, so they go as one
pipeline over the check engine's lean client (``CheckEngine.commands``: hiredis over
asyncio.Protocol) rather than redis-py: ``make bench`` row 2b measured redis-py's two calls
at 38% of a verify's CPU. Nothing is cached: a revoked token is refused on its next call, and
the rate is one counter per token for every API process (count_in_window.lua, a fixed
one-second window).
"""

from __future__ import annotations

from api.errors import ApiError
from authz.engine import CheckEngine
from tollway import schema, scripts
from tollway.api_tokens import ApiToken, ApiTokens, live
from tollway.throttle import counter

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tollway-api"'}


class Gate:
    def __init__(self, engine: CheckEngine, tokens: ApiTokens, per_token: int) -> None:
        self.engine = engine
        self.tokens = tokens
        self.per_token = per_token

    async def admit(self, authorization: str) -> ApiToken:
        """The live token an ``Authorization: Bearer`` header carries, counted. Raises
        ApiError: 401 without a live token, 429 past its rate."""
        scheme, _, presented = authorization.partition(" ")
        found = self.tokens.lookup(presented.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise _unauthorized()
        token_id, digest = found
        # One round trip: the record, and the count under the id the presented token names.
        # (A forged token counts under an id of its own, which no live token has.)
        flat, n = await self.engine.commands(
            ("HGETALL", schema.api_token(token_id)),
            scripts.call("count_in_window", [counter("api", token_id)], ["1"]),
        )
        token = live(token_id, digest, dict(zip(flat[::2], flat[1::2], strict=True)))
        if token is None:
            raise _unauthorized()
        if int(n) > self.per_token:
            raise ApiError(429, "rate_limited", f"over {self.per_token} requests per second")
        return token


def _unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "send a live API token: Authorization: Bearer twa_…")
