"""The management API's HTTP layer: every operation of the table (api/routes.py) served by one
wrapper, in one order:

    the token (401) and its rate (429): api/gate.py → scope (403) → path (404) → query (400)
    → body: within the size and time bounds (413, 408), JSON, the model (400)
    → Idempotency-Key on POST (replay, or 409) → the handler → its model as JSON

plus ``GET /v1/openapi.json`` (the document, no token needed) and ``GET /healthz``. Every
error is JSON (api/errors.py); nothing a caller sends becomes a 500, and nothing logs a token
or a key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from api.errors import ApiError, from_exception, from_validation, invalid, not_found
from api.gate import CHALLENGE, Gate
from api.idempotency import Idempotency, fingerprint
from api.openapi import document
from api.operations import PATH_PATTERNS, Call, Operation, Services
from api.routes import OPERATIONS
from tollway.api_tokens import ApiTokens
from tollway.logs import fields

log = logging.getLogger("tollway.api")

WebHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiApp:
    def __init__(
        self,
        services: Services,
        tokens: ApiTokens,
        per_token: int,
        max_body: int,
        body_timeout_s: float,
    ) -> None:
        self.services = services
        self.gate = Gate(services.engine, tokens, per_token)
        self.max_body = max_body
        self.body_timeout_s = body_timeout_s
        self.idempotency = Idempotency(services.keys.redis, services.keys.hasher.pepper)
        self.document = json.dumps(document(OPERATIONS), indent=2)
        self._patterns = {k: re.compile(v) for k, v in PATH_PATTERNS.items()}

    def build(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, middlewares=[self.json_errors])
        for op in OPERATIONS:
            app.router.add_route(op.method, op.path, self.serve(op))
        app.router.add_get("/v1/openapi.json", self.openapi)
        app.router.add_get("/healthz", self.healthz)
        return app

    @web.middleware
    async def json_errors(self, request: web.Request, handler: WebHandler) -> web.StreamResponse:
        """aiohttp's own answers (no route, wrong method) as JSON errors, and a bug as a
        logged 500 that says nothing of it."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            code = {404: "not_found", 405: "invalid_request"}.get(exc.status, "invalid_request")
            return ApiError(exc.status, code, exc.reason).response()
        except Exception:
            log.exception("unhandled", extra=fields(path=request.path))
            return ApiError(500, "internal_error", "something went wrong on our side").response()

    async def openapi(self, _: web.Request) -> web.Response:
        return web.Response(text=self.document, content_type="application/json")

    async def healthz(self, _: web.Request) -> web.Response:
        try:
            await self.services.keys.redis.ping()
        except Exception:
            return ApiError(503, "unavailable", "Redis does not answer").response()
        return web.json_response({"status": "ok"})

    def serve(self, op: Operation) -> WebHandler:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                return await self._answer(op, request)
            except Exception as exc:
                error = from_exception(exc)
                if error is None:
                    raise
                if error.status >= 500:
                    log.warning(
                        "unavailable", extra=fields(operation=op.operation_id, error=repr(exc))
                    )
                headers = CHALLENGE if error.status == 401 else None
                if error.status == 429:
                    headers = {"Retry-After": "1"}
                return error.response(headers)

        return handler

    async def _answer(self, op: Operation, request: web.Request) -> web.Response:
        token = await self.gate.admit(request.headers.get("Authorization", ""))
        if not token.allows(op.scope):
            raise ApiError(403, "forbidden", f"this token lacks the {op.scope} scope")
        path = self._path(op, request)
        call = Call(self.services, token, path)
        if op.query is not None:
            try:
                call.query = op.query.model_validate(dict(request.query))
            except ValidationError as exc:
                raise from_validation(exc, "query") from None
        elif request.query:
            raise invalid(f"{op.operation_id} takes no query parameters")
        raw = await self._read(request)
        key = request.headers.get("Idempotency-Key")
        if op.method != "POST" or key is None:
            call.body = self._body(op, raw)
            return _json(200, await op.handler(call))
        Idempotency.check_key(key)
        fp = fingerprint(op.method, request.path, raw)
        stored = await self.idempotency.begin(token.id, key, fp)
        if stored is not None:
            return web.Response(
                status=stored.status,
                text=stored.body,
                content_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        try:
            call.body = self._body(op, raw)
        except ApiError:
            await self.idempotency.forget(token.id, key)
            raise
        try:
            response = _json(200, await op.handler(call))
        except Exception as exc:
            error = from_exception(exc)
            if error is None or error.status >= 500:
                await self.idempotency.forget(token.id, key)
                raise
            response = error.response()
        await self.idempotency.finish(token.id, key, fp, response.status, response.text or "")
        return response

    def _path(self, op: Operation, request: web.Request) -> dict[str, str]:
        path = {}
        for name in op.params:
            value = request.match_info[name]
            if not self._patterns[name].match(value):
                raise not_found(f"no {name.replace('_', ' ')} {value[:80]!r}")
            path[name] = value
        return path

    async def _read(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise _too_large(self.max_body)
        try:
            if request.content.is_eof():  # all here already (a small body, usually): no timer
                return await request.read()
            async with asyncio.timeout(self.body_timeout_s):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _too_large(self.max_body) from None
        except TimeoutError:
            raise ApiError(408, "request_timeout", "the body did not arrive in time") from None

    def _body(self, op: Operation, raw: bytes) -> Any:
        try:
            data = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError, RecursionError):  # nested past the parser's depth
            raise invalid("the body is not JSON") from None
        if not isinstance(data, dict):
            raise invalid("the body must be a JSON object")
        if op.body is None:
            if data:
                raise invalid(f"{op.operation_id} takes no body fields", next(iter(data)))
            return None
        try:
            return op.body.model_validate(data)
        except ValidationError as exc:
            raise from_validation(exc, "body") from None


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"bodies are limited to {limit} bytes")


def _json(status: int, model: Any) -> web.Response:
    return web.Response(
        status=status, text=model.model_dump_json(), content_type="application/json"
    )
