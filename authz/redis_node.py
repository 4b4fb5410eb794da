"""A lean pipelined Redis client for the check path: one connection to one Redis node.

Why this exists, when redis-py is used everywhere else: authz makes one Redis round trip per
check, and redis-py's asyncio client costs more CPU than the rest of the check's own work. Its
pipeline builds Command objects, checks a connection out of a pool and runs a per-command
parse loop. This client is ``hiredis.pack_command`` to encode, one ``transport.write`` per
pipeline, and ``hiredis.Reader`` (C) to split the reply stream, over a bare
``asyncio.Protocol``, with one future per pipeline, not per command. ``make bench`` measures
the client CPU per EVALSHA of this client against redis-py's in every run
(``bench/redis_clients.py``); inside authz under load, redis-py also pays for its pool and for
more, smaller pipelines.

What it does, and no more:

- ``execute(commands)``: one pipeline, written at once, replies matched to commands in order
  (Redis answers in order on one connection). An error reply comes back in its command's
  place as a ``ReplyError``; it does not fail the others.
- Replies that do not come within ``timeout_s`` are ``StoreTimeout`` in their places, and
  the connection is dropped (a partition may never answer; a frozen Redis would answer
  late). A connection that breaks puts ``ReplyLost`` in the places of the replies still
  missing; the replies already read keep their answers. Commands that Redis may have run are
  never sent again: nothing runs twice. ``StoreConnectionError`` means nothing was sent.
- A caller that stops waiting (its own deadline) does not desynchronise the connection: the
  replies still arrive and are discarded in order.
- The connection is opened on first use and reopened after a failure, no sooner than a
  backoff that doubles from 10 ms to 1 s; while it waits, calls fail at once with
  ``StoreConnectionError`` instead of queueing behind a dead node.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from collections import deque
from typing import Any, cast

import hiredis

ReplyError = hiredis.ReplyError

BACKOFF_MIN_S = 0.01
BACKOFF_MAX_S = 1.0


class StoreConnectionError(ConnectionError):
    """The node could not be reached: nothing was sent."""


class ReplyLost(Exception):
    """The command was sent but its reply never came (the connection broke): Redis may or
    may not have run it."""


class StoreTimeout(ReplyLost):
    """The command was sent but the node did not answer within the client's read timeout."""


class _Pipeline:
    """One pipeline's replies as they arrive, and the one future that gets them all (a
    future per command would cost a loop wake-up per command)."""

    __slots__ = ("fut", "n", "replies")

    def __init__(self, fut: asyncio.Future[list[Any]], n: int) -> None:
        self.fut = fut
        self.n = n
        self.replies: list[Any] = []

    def add(self, reply: Any) -> bool:
        """Take the next reply; True once the pipeline is complete (and answered)."""
        self.replies.append(reply)
        if len(self.replies) < self.n:
            return False
        if not self.fut.done():  # its caller may have stopped waiting
            self.fut.set_result(self.replies)
        return True

    def fail(self, error: BaseException) -> None:
        """The replies still missing never come: ``error`` in their places."""
        self.replies += [error] * (self.n - len(self.replies))
        if not self.fut.done():
            self.fut.set_result(self.replies)


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.waiting: deque[_Pipeline] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.close(ReplyLost(f"protocol error: {exc}"))
                return
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream cannot be trusted
                self.close(ReplyLost("unexpected reply"))
                return
            if waiting[0].add(reply):
                waiting.popleft()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ReplyLost(f"connection lost: {exc or 'closed by peer'}"))

    def _fail(self, error: BaseException) -> None:
        if self.lost is None:
            self.lost = error
        while self.waiting:
            self.waiting.popleft().fail(self.lost)

    def close(self, error: BaseException) -> None:
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()

    @property
    def alive(self) -> bool:
        return self.lost is None and self.transport is not None

    def send(self, payload: bytes, n: int) -> asyncio.Future[list[Any]]:
        """Write a pipeline of ``n`` commands; a future of their ``n`` replies, in order."""
        assert self.transport is not None
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.waiting.append(_Pipeline(fut, n))
        self.transport.write(payload)
        return fut


class RedisNode:
    """One Redis node, one connection, pipelines in order."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout_s: float | None,
        password: str | None = None,
        username: str | None = None,
        db: int = 0,
        tls: bool = False,
        path: str | None = None,
    ) -> None:
        """``password``/``username`` (AUTH) and ``db`` (SELECT) are sent on every connect;
        ``tls``: the system's default TLS context; ``path``: a Unix socket instead of TCP."""
        self.host, self.port = host, port
        self.tls, self.path = tls, path
        self.timeout_s = timeout_s
        self._hello: list[tuple[Any, ...]] = []
        if password:
            self._hello.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            self._hello.append(("SELECT", db))
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._backoff = 0.0
        self._retry_at = 0.0

    @property
    def address(self) -> str:
        return self.path or f"{self.host}:{self.port}"

    async def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` as one pipeline; their replies in order. An error reply, or the
        failure of a command whose reply never came (the connection broke or the read timed
        out), is in that command's place. Raises StoreConnectionError when the pipeline could
        not be sent at all."""
        if not commands:
            return []
        conn = await self._connection()
        payload = b"".join([hiredis.pack_command(c) for c in commands])
        fut = conn.send(payload, len(commands))
        timer = None
        if self.timeout_s is not None:
            timer = asyncio.get_running_loop().call_later(self.timeout_s, self._timed_out, conn)
        try:
            # Cancelling this await leaves the pipeline queued: its replies are read and
            # dropped in order.
            return await fut
        finally:
            if timer is not None:
                timer.cancel()

    def _timed_out(self, conn: _Connection) -> None:
        conn.close(StoreTimeout(f"no reply from {self.address} within {self.timeout_s} s"))

    async def _connection(self) -> _Connection:
        if self._conn is not None and self._conn.alive:
            return self._conn
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            raise StoreConnectionError(
                f"{self.address} is unreachable; next try in "
                f"{(self._retry_at - loop.time()) * 1000:.0f} ms"
            )
        self._connecting = loop.create_future()
        try:
            conn = await self._open(loop)
        except BaseException as exc:
            error = StoreConnectionError(f"cannot connect to {self.address}: {exc!r}")
            self._connecting.set_exception(error)
            self._connecting.exception()  # retrieved: only waiters re-raise it
            self._connecting = None
            if isinstance(exc, asyncio.CancelledError):
                raise  # the caller gave up; the node is not to blame
            self._backoff = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, self._backoff * 2))
            self._retry_at = loop.time() + self._backoff * random.uniform(0.5, 1.0)  # noqa: S311
            raise error from exc
        self._backoff = 0.0
        self._conn = conn
        self._connecting.set_result(conn)
        self._connecting = None
        return conn

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        async with asyncio.timeout(self.timeout_s):
            if self.path is not None:
                _, conn = await loop.create_unix_connection(_Connection, self.path)
            else:
                tls = ssl.create_default_context() if self.tls else None
                transport, conn = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=tls
                )
                sock = transport.get_extra_info("socket")
                if sock is not None:  # asyncio sets it; say so for every loop
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._hello:
                payload = b"".join([hiredis.pack_command(c) for c in self._hello])
                for reply in await conn.send(payload, len(self._hello)):
                    if isinstance(reply, ReplyError):
                        conn.close(StoreConnectionError(str(reply)))
                        raise StoreConnectionError(
                            f"{self.address} refused the connection: {reply}"
                        )
        return conn

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close(ReplyLost("client closed"))
            self._conn = None
