"""Who may ask the webhook service for a Checkout Session or a key, and how often.

``POST /checkout`` creates a Checkout Session, and ``GET /keys/claim`` for an id tollway has
not seen asks Stripe about it: each costs a call on the operator's Stripe rate limit, so
neither may be open to anyone without bound.

- With ``TOLLWAY_BACKEND_TOKEN`` set, both answer only a caller that sends it (the portal, or
  the operator's own backend): 401 otherwise. That caller throttles its own clients (the
  portal does, per client address).
- Without it (a customer's browser claims its key straight after Checkout), both are
  throttled per client address (tollway/client_address.py), 429 past the limit.
- Either way, a session id Stripe did not know is remembered for UNKNOWN_TTL_S: a claim of it
  again is a 404 without a Stripe call.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tollway import schema
from tollway.client_address import client_address
from tollway.compare import same
from tollway.throttle import Throttle
from webhook.errors import error

WINDOW_S = 900
UNKNOWN_TTL_S = 600


class Gate:
    def __init__(self, redis: Any, token: str, trusted_hops: int, per_client: int) -> None:
        self.redis = redis
        self.token = token
        self.trusted_hops = trusted_hops
        self.per_client = per_client
        self.throttle = Throttle(redis, WINDOW_S)

    async def refuse(self, request: web.Request, kind: str) -> web.Response | None:
        """None if the request may go on; else the answer that refuses it."""
        if self.token:
            if same(request.headers.get("Authorization", ""), f"Bearer {self.token}"):
                return None
            return error(
                401,
                "unauthorized",
                "this path is for the portal and the operator's "
                "backend: send Authorization: Bearer <TOLLWAY_BACKEND_TOKEN>",
            )
        client = client_address(
            request.remote, request.headers.get("X-Forwarded-For"), self.trusted_hops
        )
        if await self.throttle.hit(kind, client, self.per_client):
            return None
        return error(
            429,
            "rate_limited",
            f"at most {self.per_client} of these per "
            f"{WINDOW_S // 60} minutes from one address; try again later",
        )

    async def known_unknown(self, session: str) -> bool:
        """Whether Stripe said lately that it does not know ``session``."""
        return bool(await self.redis.exists(schema.unknown_checkout(session)))

    async def remember_unknown(self, session: str) -> None:
        await self.redis.set(schema.unknown_checkout(session), "1", ex=UNKNOWN_TTL_S)
