"""HTTP/1.1 answers as bytes, for the lean HTTP front (authz/http_front.py): a status line,
header lines that cannot be split, a JSON answer, the JSON error shape.

What the front's apps answer with: authz's checks (authz/http_responses.py builds a
``Decision``'s answer from these pieces) and the management API's verify listener
(api/verify_front.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from tollway.errors import error_body

PHRASES = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    414: "URI Too Long",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_NO_CRLF = str.maketrans("", "", "\r\n")
CLOSE = b"connection: close\r\n"


def lines(headers: Iterable[tuple[str, str]]) -> bytes:
    """Header lines; a value cannot end its line early (no CR or LF gets through)."""
    return b"".join(
        f"{k}: {v.translate(_NO_CRLF)}\r\n".encode("latin-1", "replace") for k, v in headers
    )


def status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {PHRASES.get(status, 'Unknown')}\r\n".encode()


def json_answer(
    status: int,
    body: bytes,
    keep_alive: bool = True,
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """The whole answer: ``status``, a JSON ``body`` and any other ``headers``."""
    return (
        status_line(status)
        + b"content-type: application/json\r\n"
        + lines(headers)
        + f"content-length: {len(body)}\r\n".encode()
        + (b"" if keep_alive else CLOSE)
        + b"\r\n"
        + body
    )


def error(status: int, code: str, message: str, keep_alive: bool = False) -> bytes:
    """An error in tollway's JSON shape (``{"error": {"code", "message"}}``)."""
    return json_answer(status, error_body(code, message).encode(), keep_alive)


def health(serving: bool, keep_alive: bool, service: str) -> bytes:
    """``/healthz``: 200 while serving, 503 once draining (a load balancer moves away)."""
    if serving:
        return json_answer(200, b'{"status": "serving"}', keep_alive)
    return error(503, "draining", f"{service} is shutting down", keep_alive)
