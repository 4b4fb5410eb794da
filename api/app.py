"""The management API's aiohttp listener: every operation of the table (api/routes.py), each
through the one pipeline (api/pipeline.py), plus ``GET /v1/openapi.json`` (the document, no
token needed), ``GET /healthz`` and ``GET /metrics`` (Prometheus: verify's decisions, counted
by the check engine). What is aiohttp's own stays here: routing, reading the body within its
bounds (size: 413, time: 408), and answers. Every error is JSON (api/errors.py); nothing a
caller sends becomes a 500, and nothing logs a token or a key.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.errors import ApiError
from api.openapi import document
from api.operations import Operation
from api.pipeline import Incoming, Pipeline, Reply, too_large, too_slow
from api.routes import OPERATIONS
from tollway.logs import fields

log = logging.getLogger("tollway.api")

WebHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiApp:
    def __init__(
        self,
        pipeline: Pipeline,
        max_body: int,
        body_timeout_s: float,
    ) -> None:
        self.pipeline = pipeline
        self.max_body = max_body
        self.body_timeout_s = body_timeout_s
        self.registry = pipeline.services.engine.registry  # the check engine's metrics
        self.document = json.dumps(document(OPERATIONS), indent=2)

    def build(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, middlewares=[self.json_errors])
        for op in OPERATIONS:
            app.router.add_route(op.method, op.path, self.serve(op))
        app.router.add_get("/v1/openapi.json", self.openapi)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        return app

    @web.middleware
    async def json_errors(self, request: web.Request, handler: WebHandler) -> web.StreamResponse:
        """aiohttp's own answers (no route, wrong method) as JSON errors, and a bug as a
        logged 500 that says nothing of it."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            code = {404: "not_found", 405: "invalid_request"}.get(exc.status, "invalid_request")
            return _error(ApiError(exc.status, code, exc.reason))
        except Exception:
            log.exception("unhandled", extra=fields(path=request.path))
            return _error(ApiError(500, "internal_error", "something went wrong on our side"))

    async def openapi(self, _: web.Request) -> web.Response:
        return web.Response(text=self.document, content_type="application/json")

    async def healthz(self, _: web.Request) -> web.Response:
        try:
            await self.pipeline.services.keys.redis.ping()
        except Exception:
            return _error(ApiError(503, "unavailable", "Redis does not answer"))
        return web.json_response({"status": "ok"})

    async def metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def serve(self, op: Operation) -> WebHandler:
        async def handler(request: web.Request) -> web.StreamResponse:
            incoming = Incoming(
                path=request.path,
                authorization=request.headers.get("Authorization", ""),
                params=request.match_info,
                query=request.query,
                read=lambda: self._read(request),
                idempotency_key=request.headers.get("Idempotency-Key"),
            )
            return _response(await self.pipeline.run(op, incoming))

        return handler

    async def _read(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise too_large(self.max_body)
        try:
            if request.content.is_eof():  # all here already (a small body, usually): no timer
                return await request.read()
            async with asyncio.timeout(self.body_timeout_s):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_large(self.max_body) from None
        except TimeoutError:
            raise too_slow() from None


def _response(reply: Reply) -> web.Response:
    return web.Response(
        status=reply.status,
        text=reply.body,
        content_type="application/json",
        headers=reply.headers or None,
    )


def _error(error: ApiError) -> web.Response:
    return _response(Reply(error.status, error.body()))
