"""The API's error answers as exceptions, one class per stable code."""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """An error answer: ``{"error": {"code", "message", "field"}}`` with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class InvalidRequest(ApiError):
    """400 (and 408, 413): the request cannot be used; ``field`` names what is at fault."""


class Unauthorized(ApiError):
    """401: no live token."""


class Forbidden(ApiError):
    """403: the token lacks the operation's scope."""


class NotFound(ApiError):
    """404: no such key, account or route."""


class Conflict(ApiError):
    """409: the state refuses the change (``conflict``), or an Idempotency-Key clash
    (``idempotency_mismatch``)."""


class RateLimited(ApiError):
    """429: the token's requests per second are spent; retry in a second."""


class Unavailable(ApiError):
    """5xx: the API cannot answer now; retry."""


BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: InvalidRequest,
    408: InvalidRequest,
    409: Conflict,
    413: InvalidRequest,
    429: RateLimited,
}


def from_answer(status: int, body: bytes) -> ApiError:
    """The exception for an error answer (a body that is not the API's shape still raises)."""
    try:
        error: Any = json.loads(body)["error"]
        code, message, field = str(error["code"]), str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError):
        code, message, field = "unexpected_answer", body[:200].decode("utf-8", "replace"), None
    cls = BY_STATUS.get(status, Unavailable if status >= 500 else ApiError)
    return cls(status, code, message, field)
