"""Which error becomes which answer: the one table for every route of the management API.

Every error is ``{"error": {"code", "message", "field"}}`` (the shape of authz's denials, with
the request field at fault when there is one) under a stable code:

    400 invalid_request       a body, query or parameter that cannot be used (InvalidInput,
                              a pydantic ValidationError: ``field`` names it)
    401 unauthorized          no token, or not a live one
    403 forbidden             the token lacks the operation's scope
    404 not_found             no such key, account or route (NotFound)
    408 request_timeout       the body did not arrive in time
    409 conflict              the key's or account's state refuses the change (LifecycleError),
                              or a request with the same Idempotency-Key is still running
    409 idempotency_mismatch  an Idempotency-Key used before with another request
    409 idempotency_unreadable  the answer kept for an Idempotency-Key was sealed under a key
                              pepper no longer in force
    413 payload_too_large     a body over the bound
    429 rate_limited          the token's requests per second are spent
    503 unavailable           Redis cannot answer now; retry (Unavailable, RedisError)
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from tollway.errors import InvalidInput, LifecycleError, NotFound, Unavailable


class ApiError(Exception):
    """An answer other than success, raised anywhere under a handler."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> str:
        return json.dumps(
            {"error": {"code": self.code, "message": self.message, "field": self.field}}
        )


def invalid(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request", message, field)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def from_validation(exc: ValidationError, where: str) -> ApiError:
    """The first problem pydantic found, naming its field (``where``: body or query)."""
    first: Any = exc.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    message = f"{where} field {field}: {first['msg']}" if field else f"{where}: {first['msg']}"
    return invalid(message, field)


def from_exception(exc: Exception) -> ApiError | None:
    """The answer for an error tollway raises on purpose, or a store failure; None for a bug."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationError):
        return from_validation(exc, "body")
    if isinstance(exc, LifecycleError):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, InvalidInput):
        return invalid(str(exc), exc.field)
    if isinstance(exc, NotFound):
        return not_found(str(exc.args[0]) if exc.args else "not found")
    if isinstance(exc, ResponseError):
        return None  # Redis refused a command: a bug of ours, not an outage
    if isinstance(exc, (Unavailable, RedisError, RedisClusterException, OSError)):
        return ApiError(503, "unavailable", "the store cannot answer now; retry")
    return None
