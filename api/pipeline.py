"""One API request, from what arrived to the answer, apart from any HTTP server: every
operation goes through these steps, in this order, whichever listener it came in on (the
aiohttp app, api/app.py; verify's lean listener, api/verify_front.py):

    the token (401) and its rate (429): api/gate.py → scope (403) → path (404) → query (400)
    → body: read within the listener's bounds (413, 408), JSON, the model (400)
    → Idempotency-Key on POST (replay, or 409) → the handler → its model as JSON

Every error becomes its answer here (api/errors.py); a bug is raised for the listener to log
and answer 500.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from api.errors import ApiError, from_exception, from_validation, invalid, not_found
from api.gate import CHALLENGE, Gate
from api.idempotency import Idempotency, fingerprint
from api.operations import PATH_PATTERNS, Call, Operation, Services
from tollway.api_tokens import ApiTokens
from tollway.logs import fields

log = logging.getLogger("tollway.api")


@dataclass(slots=True)  # (not frozen: a frozen dataclass costs verify's hot path to build)
class Incoming:
    """A request as the pipeline reads it. ``read`` gives the body, within the listener's
    bounds (raising ApiError 413 or 408); it is called only once the token is admitted."""

    path: str  # the URL's path, as the fingerprint of an idempotent request takes it
    authorization: str
    params: Mapping[str, str]  # the path's parameters, by name, as they came
    query: Mapping[str, str]
    read: Callable[[], Awaitable[bytes]]
    idempotency_key: str | None = None


@dataclass(slots=True)
class Reply:
    status: int
    body: str  # JSON
    headers: dict[str, str] = field(default_factory=dict)


class Pipeline:
    def __init__(self, services: Services, tokens: ApiTokens, per_token: int) -> None:
        self.services = services
        self.gate = Gate(services.engine, tokens, per_token)
        self.idempotency = Idempotency(services.keys.redis, services.keys.hasher.peppers)
        self._patterns = {k: re.compile(v) for k, v in PATH_PATTERNS.items()}

    async def run(self, op: Operation, request: Incoming) -> Reply:
        """The answer to ``request`` for ``op``. Raises only for a bug."""
        try:
            return await self._answer(op, request)
        except Exception as exc:
            error = from_exception(exc)
            if error is None:
                raise
            if error.status >= 500:
                log.warning("unavailable", extra=fields(operation=op.operation_id, error=repr(exc)))
            headers = {}
            if error.status == 401:
                headers = dict(CHALLENGE)
            elif error.status == 429:
                headers = {"Retry-After": "1"}
            return Reply(error.status, error.body(), headers)

    async def _answer(self, op: Operation, request: Incoming) -> Reply:
        token = await self.gate.admit(request.authorization, op.hot)
        if not token.allows(op.scope):
            raise ApiError(403, "forbidden", f"this token lacks the {op.scope} scope")
        call = Call(self.services, token, self._path(op, request.params))
        if op.query is not None:
            try:
                call.query = op.query.model_validate(dict(request.query))
            except ValidationError as exc:
                raise from_validation(exc, "query") from None
        elif request.query:
            raise invalid(f"{op.operation_id} takes no query parameters")
        raw = await request.read()
        key = request.idempotency_key
        if op.method != "POST" or key is None:
            call.body = _body(op, raw)
            return _ok(await op.handler(call))
        Idempotency.check_key(key)
        fp = fingerprint(op.method, request.path, raw)
        stored = await self.idempotency.begin(token.id, key, fp)
        if stored is not None:
            return Reply(stored.status, stored.body, {"Idempotent-Replayed": "true"})
        try:
            call.body = _body(op, raw)
        except ApiError:
            await self.idempotency.forget(token.id, key)
            raise
        try:
            reply = _ok(await op.handler(call))
        except Exception as exc:
            error = from_exception(exc)
            if error is None or error.status >= 500:
                await self.idempotency.forget(token.id, key)
                raise
            reply = Reply(error.status, error.body())
        await self.idempotency.finish(token.id, key, fp, reply.status, reply.body)
        return reply

    def _path(self, op: Operation, params: Mapping[str, str]) -> dict[str, str]:
        path = {}
        for name in op.params:
            value = params[name]
            if not self._patterns[name].match(value):
                raise not_found(f"no {name.replace('_', ' ')} {value[:80]!r}")
            path[name] = value
        return path


def _body(op: Operation, raw: bytes) -> Any:
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


def _ok(model: BaseModel) -> Reply:
    return Reply(200, model.model_dump_json())


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"bodies are limited to {limit} bytes")


def too_slow() -> ApiError:
    return ApiError(408, "request_timeout", "the body did not arrive in time")
