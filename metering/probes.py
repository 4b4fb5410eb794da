"""/healthz and /metrics over HTTP, for metering's two processes (the drain and the receiver)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Healthz = Callable[[web.Request], Awaitable[web.Response]]


async def ok(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _prometheus(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"content-type": CONTENT_TYPE_LATEST})


async def serve_probes(host: str, port: int, healthz: Healthz = ok) -> web.AppRunner:
    """Serve them on ``host:port``; the caller cleans the runner up."""
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", _prometheus)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
