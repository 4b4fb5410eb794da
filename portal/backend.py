"""The webhook service, asked over HTTP: it owns Checkout and the one-time key claim, so the
portal calls the same endpoints `curl` users do instead of a second implementation
(``POST /checkout``, ``GET /keys/claim``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def code(self) -> str:
        """The error's code (webhook/errors.py's JSON shape), "" on success."""
        err = self.body.get("error")
        return str(err.get("code", "")) if isinstance(err, dict) else ""


class Backend:
    def __init__(self, webhook_url: str, token: str = "") -> None:
        """``token``: TOLLWAY_BACKEND_TOKEN, which the webhook service then requires."""
        self.base = webhook_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._session

    async def _call(self, method: str, path: str, **kw: Any) -> Answer:
        """The answer; a 502 with no body when the webhook service cannot be reached."""
        try:
            async with self._client().request(
                method, self.base + path, headers=self._headers, **kw
            ) as r:
                raw = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError):
            return Answer(502, {})
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        return Answer(status, body if isinstance(body, dict) else {})

    async def checkout(self, tier: str, email: str) -> Answer:
        """A Checkout Session for ``tier``: {"url", "id"}."""
        return await self._call("POST", "/checkout", json={"tier": tier, "email": email})

    async def buy_credits(self, account: str, pack: str, email: str) -> Answer:
        """A Checkout Session (payment mode) for a prepaid account's credit pack: {"url", "id"}."""
        body = {"account": account, "pack": pack, "email": email}
        return await self._call("POST", "/credits/checkout", json=body)

    async def claim(self, session_id: str) -> Answer:
        """The key of a completed Checkout, once: {"api_key", "key_id", "tier", "customer"}."""
        return await self._call("GET", "/keys/claim", params={"session_id": session_id})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
