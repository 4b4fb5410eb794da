"""Verify's own listener (``TOLLWAY_API_VERIFY_PORT``): ``POST /v1/keys/verify`` on the lean
HTTP front authz's HTTP mode runs on (authz/http_front.py: uvloop + httptools), for callers
that verify on their own hot path.

Why a listener of its own: verify is a check, and on aiohttp the server alone costs what a
whole HTTP-mode check does (``make bench`` row 2b: aiohttp's empty handler beside a check),
so verify could not come within 2x of a check's CPU. Here the same request runs through the
same pipeline (api/pipeline.py: token, rate, scope, body, Idempotency-Key, the handler) and
gets the same answer as on the API's port, which serves verify too. A separate port also lets
a deployment open verify to more callers than the management operations.

Paths: ``/v1/keys/verify`` (POST; another method is 405), ``/healthz``; anything else is a 404
that says where the other operations are. A body is bounded by ``TOLLWAY_API_MAX_BODY``
(413), and a request must be whole within ``TOLLWAY_API_BODY_TIMEOUT_S`` of its first byte
(408): the front's bounds (authz/http_connection.py).
"""

from __future__ import annotations

from collections.abc import Awaitable
from urllib.parse import parse_qsl

from api.pipeline import Incoming, Pipeline
from api.verify import VERIFY
from authz.http_connection import Connection, Request
from authz.http_wire import error, health, json_answer

PATH = VERIFY.path.encode()
HEALTH_PATH = b"/healthz"


class VerifyApp:
    read_headers = frozenset((b"authorization", b"idempotency-key"))
    keeps_body = True

    def __init__(self, pipeline: Pipeline, max_body: int) -> None:
        self.pipeline = pipeline
        self.max_body = max_body

    def respond(self, conn: Connection, request: Request) -> bytes | Awaitable[bytes]:
        path, _, query = request.url.partition(b"?")
        keep_alive = request.keep_alive
        if path == PATH:
            if request.method != b"POST":
                return error(405, "invalid_request", "verify takes POST", keep_alive)
            return self._verify(request.headers, query, request.body, keep_alive)
        if path == HEALTH_PATH:
            return health(conn.front.serving, keep_alive, "the API")
        return error(
            404,
            "not_found",
            "this port serves POST /v1/keys/verify; the other operations are on the API's port",
            keep_alive,
        )

    async def _verify(
        self, headers: dict[str, str], query: bytes, body: bytes, keep_alive: bool
    ) -> bytes:
        async def read() -> bytes:  # whole already: the front answers complete requests
            return body

        incoming = Incoming(
            path=VERIFY.path,
            authorization=headers.get("authorization", ""),
            params={},
            query=dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {},
            read=read,
            idempotency_key=headers.get("idempotency-key"),
        )
        reply = await self.pipeline.run(VERIFY, incoming)
        return json_answer(reply.status, reply.body.encode(), keep_alive, reply.headers.items())
