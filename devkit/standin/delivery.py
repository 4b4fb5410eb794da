"""Signed webhook delivery with Stripe's retry behaviour: every event the world emits is POSTed
to the webhook URL with a ``Stripe-Signature`` header; a non-2xx answer or none at all means
try again, backing off, up to len(retry_delays) more times."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aiohttp
import stripe
from aiohttp import web

from devkit.standin.objects import World

log = logging.getLogger("devkit.standin")
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0)


class Delivery:
    def __init__(
        self,
        world: World,
        url: str = "",
        secret: str = "",
        retry_delays: tuple[float, ...] = RETRY_DELAYS_S,
    ) -> None:
        self.url = url
        self.secret = secret
        self.retry_delays = retry_delays
        self.attempts: list[
            dict[str, Any]
        ] = []  # every attempt, for tests and GET /_standin/deliveries
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        world.listeners.append(self._queue.put_nowait)
        self._sender: asyncio.Task[None] | None = None

    async def start(self, _: web.Application) -> None:
        self._sender = asyncio.create_task(self._deliver_forever())

    async def stop(self, _: web.Application) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _deliver_forever(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                event = await self._queue.get()
                if self.url and self.secret:
                    await self._deliver(http, event)

    async def _deliver(self, http: aiohttp.ClientSession, event: dict[str, Any]) -> None:
        payload = json.dumps(event)
        for attempt, delay in enumerate((0.0, *self.retry_delays), start=1):
            await asyncio.sleep(delay)
            header = stripe.WebhookSignature.generate_signature_header(payload, self.secret)
            status: int | str
            try:
                async with http.post(
                    self.url,
                    data=payload.encode(),
                    headers={"Stripe-Signature": header, "content-type": "application/json"},
                ) as r:
                    status = r.status
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                status = type(exc).__name__
            self.attempts.append(
                {"event": event["id"], "type": event["type"], "attempt": attempt, "status": status}
            )
            if isinstance(status, int) and 200 <= status < 300:
                return
        log.error("webhook delivery gave up on %s after %d attempts", event["id"], attempt)
