"""The lean HTTP front: an HTTP/1.1 server on uvloop + httptools, for what is on a caller's
hot path: authz's checks in Envoy's ``http_service`` ext_authz mode (authz/http_check.py)
and the management API's verify listener (api/verify_front.py).

Each connection is an ``asyncio.Protocol`` (authz/http_connection.py) whose bytes go to
``httptools.HttpRequestParser``; this module is the server around them: listening, sweeping
slow and idle connections, draining. A complete request is answered by the front's app
(``HttpApp``); requests pipelined on one connection are answered in order.

Bad input gets a clear 4xx with the JSON error shape, and the connection is closed: a request
the parser rejects (400), a URL over 8 KiB (414), headers over 64 KiB in all or over 100 of
them (431), a body over the app's bound (413). A half-closed connection gets its pending
answers, then is closed.

A client that is slow or does not read costs bounded memory and CPU (``HttpLimits``):
- the bytes of a request's head are counted as they arrive, not only once a header is whole
  (httptools buffers an unterminated header value itself, and appending to it costs CPU in
  proportion to its length): past MAX_HEAD_BYTES the request is refused 431;
- a request (head and body) must be complete within ``head_s`` of its first byte (408), and a
  connection with no request in flight is closed after ``idle_s``;
- reading pauses while the answers waiting for a slow reader are over ``max_pending`` or the
  socket's write buffer is over WRITE_HIGH (``pause_writing``), and resumes when they drain;
- past ``max_connections`` open connections, a new one is closed at once.

Why not a framework: ASGI servers and aiohttp build a request object, a header multidict and
a response object per request on top of the same parsing; ``make bench`` measures this
front's empty handler at a third of aiohttp's CPU per request (rows 1 and 2b).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from authz.http_connection import Connection, HttpApp, HttpLimits

SWEEP_S = 0.5  # how often idle and slow connections are looked for


class HttpFront:
    """The HTTP server: one listening socket (shared by workers through SO_REUSEPORT) and
    optionally this worker's own port."""

    def __init__(
        self, app: HttpApp, limits: HttpLimits | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        """``tls``: serve over TLS (tollway/tls.py) rather than plaintext."""
        self.app = app
        self.tls = tls
        self.limits = limits or HttpLimits()
        self.refused_connections = 0  # closed at once: past max_connections
        self._sweeper: asyncio.Task[None] | None = None
        self.serving = False
        self.draining_hard = False  # past the drain: answer with connection: close
        self.connections: set[Connection] = set()
        self.servers: list[asyncio.AbstractServer] = []

    async def start(self, host: str, port: int, own_port: int = 0) -> int:
        """Listen; returns the bound (shared) port."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Connection(self), host, port, reuse_port=True, backlog=1024, ssl=self.tls
        )
        self.servers.append(server)
        if own_port:
            own = await loop.create_server(
                lambda: Connection(self), host, own_port, backlog=1024, ssl=self.tls
            )
            self.servers.append(own)
        self.serving = True
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())
        return int(server.sockets[0].getsockname()[1])

    async def _sweep(self) -> None:
        """Every SWEEP_S: close idle connections and refuse heads that are too slow. One task
        for all connections, so a request costs no timer of its own."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(SWEEP_S, self.limits.head_s / 2, self.limits.idle_s / 2))
            now = loop.time()
            for conn in list(self.connections):
                conn.sweep(now, self.limits)

    async def stop(self, drain_s: float, grace_s: float) -> None:
        """Report 503 on /healthz (apps read ``serving``) and keep answering for ``drain_s``
        (Envoy's health check moves traffic away), then stop listening, let answers in flight finish for up to
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
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
