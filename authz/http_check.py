"""authz's app on the lean HTTP front (authz/http_front.py): Envoy's ``http_service``
ext_authz mode. Paths:

- ``/check...`` (Envoy's ``path_prefix``, followed by the client's own path): a check, decided
  by the same servicer as gRPC mode (``decide_http``) and answered by
  authz/http_responses.py, whatever the method (Envoy forwards the client's);
- ``/healthz``: 200 while serving, 503 once draining (Envoy's HTTP health check);
- anything else: 404, so an Envoy without ``path_prefix`` fails closed, loudly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from authz import http_responses, http_wire
from authz.decision import Decision
from authz.http_connection import Connection, Request
from authz.request import BUCKET_HEADER, COST_HEADER, FEATURE_HEADER

CHECK_PREFIX = b"/check"
HEALTH_PATH = b"/healthz"
# Envoy sends no body unless configured to; whatever it sends is counted and dropped.
MAX_BODY = 64 * 1024

# The decision itself when it needs no await, else an awaitable of it.
Decide = Callable[[Mapping[str, str]], Decision | Awaitable[Decision]]


class CheckApp:
    read_headers = frozenset(  # what a decision reads (authz/request.py)
        h.encode()
        for h in (
            "x-api-key",
            "authorization",
            COST_HEADER,
            FEATURE_HEADER,
            BUCKET_HEADER,
            "x-request-id",
        )
    )
    max_body = MAX_BODY
    keeps_body = False

    def __init__(
        self, decide: Decide, on_unheard: Callable[[Decision], None] = lambda d: None
    ) -> None:
        """``on_unheard``: called for each allowed check whose connection was gone by the time
        it was decided (Envoy's timeout fired first): counted, but not served."""
        self.decide = decide
        self.on_unheard = on_unheard

    def respond(self, conn: Connection, request: Request) -> bytes | Awaitable[bytes]:
        url, keep_alive = request.url, request.keep_alive
        if url.startswith(CHECK_PREFIX):
            decided = self.decide(request.headers)
            if isinstance(decided, Decision):  # no task needed
                return http_responses.build(decided, keep_alive)
            return self._check(conn, decided, keep_alive)
        if url.split(b"?", 1)[0] == HEALTH_PATH:
            return http_wire.health(conn.front.serving, keep_alive, "authz")
        return http_wire.error(
            404, "not_found", "checks are served under /check (Envoy's path_prefix)", keep_alive
        )

    async def _check(self, conn: Connection, pending: Awaitable[Decision], keep: bool) -> bytes:
        d = await pending
        if d.allowed and conn.gone:
            # Counted in Redis, but Envoy no longer waits: not served.
            self.on_unheard(d)
        return http_responses.build(d, keep)
