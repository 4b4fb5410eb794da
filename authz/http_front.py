"""authz's HTTP front: Envoy's ``http_service`` ext_authz mode, on uvloop + httptools.

Each connection is an ``asyncio.Protocol`` whose bytes go to ``httptools.HttpRequestParser``.
A complete request is decided by the same servicer as gRPC mode (``decide_http``) and
answered by authz/http_responses.py. Requests pipelined on one connection are answered in
order. Paths:

- ``/check...`` (Envoy's ``path_prefix``, followed by the client's own path): a check;
- ``/healthz``: 200 while serving, 503 once draining (Envoy's HTTP health check);
- anything else: 404, so an Envoy without ``path_prefix`` fails closed, loudly.

Bad input gets a clear 4xx with the JSON error shape, and the connection is closed: a request
the parser rejects (400), a URL over 8 KiB (414), headers over 64 KiB in all or over 100 of
them (431), a body over 64 KiB (413: Envoy sends none unless configured to). A half-closed
connection gets its pending answers, then is closed.

Why not a framework: on this project's 2-core machine a request through this protocol costs
about 6 µs of CPU (issue 12's measurement; ``make bench`` shows the HTTP ceiling against the
gRPC one). ASGI servers add an application interface per request on top of the same parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

import httptools

from authz import http_responses
from authz.decision import Decision
from authz.request import COST_HEADER, FEATURE_HEADER

log = logging.getLogger("tollway.authz")

MAX_URL = 8 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_BODY = 64 * 1024
CHECK_PREFIX = b"/check"
HEALTH_PATH = b"/healthz"

# The decision itself when it needs no await, else an awaitable of it.
Decide = Callable[[Mapping[str, str]], Decision | Awaitable[Decision]]
# The request headers a decision reads (authz/request.py); the others are counted, not kept.
READ_HEADERS = frozenset(
    h.encode() for h in ("x-api-key", "authorization", COST_HEADER, FEATURE_HEADER, "x-request-id")
)


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class _Connection(asyncio.Protocol):
    def __init__(self, front: HttpFront) -> None:
        self.front = front
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.answers: deque[asyncio.Future[bytes]] = deque()  # in request order
        self.closing = False  # no more requests are read; close once answers are out
        self.hung_up = False  # the peer sent EOF: Envoy does so when its timeout fires
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.header_bytes = 0
        self.header_count = 0
        self.body_bytes = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.front.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Envoy closed the connection (its timeout fired, or it is shutting down). Checks in
        flight still finish, so that what Redis did for them is recorded here too (a lease it
        granted, say); their answers go nowhere (``_check`` counts them)."""
        self.front.connections.discard(self)
        self.answers.clear()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "bad_request", "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            # A callback's BadRequest comes wrapped in HttpParserCallbackError.
            bad = exc.__context__ or exc.__cause__
            if isinstance(bad, BadRequest):
                self._refuse(bad.status, bad.code, str(bad))
            else:
                self._refuse(400, "bad_request", f"malformed HTTP request: {exc}")

    def eof_received(self) -> bool:
        """The client half-closed: answer what it sent, then close."""
        self.closing = self.hung_up = True
        self._flush()
        return True  # keep the write side open until the answers are out

    # -- httptools callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL:
            raise BadRequest(414, "uri_too_long", f"the URL is over {MAX_URL} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        self.header_count += 1
        if self.header_bytes > MAX_HEADER_BYTES:
            raise BadRequest(431, "headers_too_large", f"headers over {MAX_HEADER_BYTES} bytes")
        if self.header_count > MAX_HEADERS:
            raise BadRequest(431, "headers_too_large", f"more than {MAX_HEADERS} headers")
        lowered = name.lower()
        if lowered not in READ_HEADERS:  # kept only what a decision reads
            return
        key = lowered.decode("latin-1")
        text = value.decode("latin-1")
        # A repeated header joins with a comma, as HTTP says a list header may.
        self.headers[key] = f"{self.headers[key]},{text}" if key in self.headers else text

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY:
            raise BadRequest(413, "body_too_large", f"a check carries no body over {MAX_BODY}")

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive() and not self.front.draining_hard
        loop = asyncio.get_running_loop()
        if self.url.startswith(CHECK_PREFIX):
            try:
                decided = self.front.decide(self.headers)
            except Exception:  # a bug: fail closed with a clear answer
                log.exception("http_check_failed")
                decided = None
            if isinstance(decided, Decision) or decided is None:  # no task needed
                fut: asyncio.Future[bytes] = loop.create_future()
                fut.set_result(_answer(decided, keep_alive))
            else:
                fut = loop.create_task(self._check(decided, keep_alive))
        else:
            fut = loop.create_future()
            fut.set_result(self._local(self.url.split(b"?", 1)[0], keep_alive))
        self.answers.append(fut)
        fut.add_done_callback(self._on_answer)
        if not keep_alive:
            self.closing = True

    # -- answers -------------------------------------------------------------------------------
    async def _check(self, pending: Awaitable[Decision], keep_alive: bool) -> bytes:
        try:
            d: Decision | None = await pending
        except Exception:  # a bug: fail closed with a clear answer, never a dropped connection
            log.exception("http_check_failed")
            d = None
        gone = self.hung_up or self.transport is None or self.transport.is_closing()
        if d is not None and d.allowed and gone:
            # Counted in Redis, but Envoy no longer waits: not served. (A client that only
            # half-closed would be counted too: the count is an upper bound.)
            self.front.on_unheard(d)
        return _answer(d, keep_alive)

    def _local(self, path: bytes, keep_alive: bool) -> bytes:
        if path == HEALTH_PATH:
            if self.front.serving:
                return http_responses.plain(200, "", "", keep_alive)
            return http_responses.plain(503, "draining", "authz is shutting down", keep_alive)
        return http_responses.plain(
            404, "not_found", "checks are served under /check (Envoy's path_prefix)", keep_alive
        )

    def _on_answer(self, _: asyncio.Future[bytes]) -> None:
        self._flush()

    def _flush(self) -> None:
        """Write every finished answer at the head of the queue, in request order."""
        if self.transport is None or self.transport.is_closing():
            return
        out = []
        while self.answers and self.answers[0].done():
            fut = self.answers.popleft()
            if not fut.cancelled():
                out.append(fut.result())
        if out:
            self.transport.write(b"".join(out))
        if self.closing and not self.answers:
            self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer bad input once, after what came before it, and read nothing more."""
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        fut.set_result(http_responses.plain(status, code, message))
        self.answers.append(fut)
        self.closing = True
        self._flush()

    @property
    def idle(self) -> bool:
        return not self.answers


def _answer(d: Decision | None, keep_alive: bool) -> bytes:
    """The HTTP answer for a decision; None: the decision failed (a bug), answered 500."""
    if d is None:
        return http_responses.plain(500, "internal_error", "authz failed on this check")
    return http_responses.build(d, keep_alive)


class HttpFront:
    """The HTTP server: one listening socket (shared by workers through SO_REUSEPORT) and
    optionally this worker's own port."""

    def __init__(
        self, decide: Decide, on_unheard: Callable[[Decision], None] = lambda d: None
    ) -> None:
        """``on_unheard``: called for each allowed check whose connection was gone by the time
        it was decided (Envoy's timeout fired first): counted, but not served."""
        self.decide = decide
        self.on_unheard = on_unheard
        self.serving = False
        self.draining_hard = False  # past the drain: answer with connection: close
        self.connections: set[_Connection] = set()
        self.servers: list[asyncio.AbstractServer] = []

    async def start(self, host: str, port: int, own_port: int = 0) -> int:
        """Listen; returns the bound (shared) port."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_port=True, backlog=1024
        )
        self.servers.append(server)
        if own_port:
            own = await loop.create_server(lambda: _Connection(self), host, own_port, backlog=1024)
            self.servers.append(own)
        self.serving = True
        return int(server.sockets[0].getsockname()[1])

    async def stop(self, drain_s: float, grace_s: float) -> None:
        """Report 503 on /healthz and keep answering for ``drain_s`` (Envoy's health check
        moves traffic away), then stop listening, let answers in flight finish for up to
        ``grace_s``, and close every connection."""
        self.serving = False
        await asyncio.sleep(drain_s)
        self.draining_hard = True
        for server in self.servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while loop.time() < deadline:
            for conn in list(self.connections):
                if conn.idle and conn.transport is not None:
                    conn.transport.close()
            if not self.connections:
                break
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
