"""One HTTP/1.1 connection of the lean HTTP front (authz/http_front.py): its bytes parsed by
httptools, each whole request answered by the front's app (``HttpApp``) or refused, answers
written in order, and what a slow or non-reading client may cost it bounded (``HttpLimits``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import httptools

from authz.http_wire import error
from tollway.errors import InvalidInput

if TYPE_CHECKING:
    from authz.http_front import HttpFront

log = logging.getLogger("tollway.authz")

MAX_URL = 8 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
# A head (request line and headers) still incomplete after this many bytes is refused. The
# bytes are counted per read, whole reads within one head, so the head held is at most this
# plus one read (uvloop reads up to 256 KiB at a time).
MAX_HEAD_BYTES = MAX_URL + MAX_HEADER_BYTES + 8 * 1024
WRITE_HIGH = 64 * 1024  # the socket's write buffer, past which reading pauses
FEED_SLICE = 16 * 1024  # bytes parsed at a time, so that a read's answers come in steps


class Request:
    """One whole request, as an app reads it."""

    __slots__ = ("body", "headers", "keep_alive", "method", "url")

    def __init__(
        self, method: bytes, url: bytes, headers: dict[str, str], body: bytes, keep_alive: bool
    ) -> None:
        self.method, self.url, self.headers = method, url, headers
        self.body, self.keep_alive = body, keep_alive  # headers: only the app's read_headers


class HttpApp(Protocol):
    """What the front serves: authz's checks (authz/http_check.py), the management API's
    verify (api/verify_front.py)."""

    read_headers: frozenset[bytes]  # lowercase names kept for ``respond``; others only counted
    max_body: int  # a larger body is refused (413)
    keeps_body: bool  # False: the body is counted against max_body, then dropped

    def respond(self, conn: Connection, request: Request) -> bytes | Awaitable[bytes]:
        """The whole answer to one request, or an awaitable of it (run as a task; one that
        raises is answered 500). Called in request order."""
        ...


@dataclass(frozen=True)
class HttpLimits:
    """What one connection may cost (authz/settings.py names each setting)."""

    idle_s: float = 300.0  # no request in flight: closed after this (Envoy's own idle: 60 s)
    head_s: float = 10.0  # a request (head and body) must be whole within this of its first byte
    max_connections: int = 4096  # per process; a new connection past it is closed at once
    max_pending: int = 128  # answers queued for a connection before its reading pauses


class BadRequest(InvalidInput):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class Connection(asyncio.Protocol):
    def __init__(self, front: HttpFront) -> None:
        self.front = front
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.answers: deque[asyncio.Future[bytes]] = deque()  # in request order
        self.closing = False  # no more requests are read; close once answers are out
        self.hung_up = False  # the peer sent EOF: Envoy does so when its timeout fires
        self.in_head = True  # between a request's first byte (or none yet) and its headers' end
        self.messages = 0  # heads begun: tells whether a read stayed within one head
        self.head_bytes = 0  # bytes of whole reads that fell within the current head
        self.head_since = 0.0  # loop time the current head began; 0.0 while not in a head
        self.last_read = 0.0  # loop time of the last bytes received
        self.paused = set[str]()  # why reading is paused: "writes" and/or "answers"
        self.backlog = b""  # bytes received and not yet parsed: waiting for room for answers
        self.max_pending = front.limits.max_pending
        self.app = front.app
        self.read_headers = front.app.read_headers
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.header_bytes = 0
        self.header_count = 0
        self.body: list[bytes] = []
        self.body_bytes = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if len(self.front.connections) >= self.front.limits.max_connections:
            self.front.refused_connections += 1
            self.transport.abort()
            return
        self.transport.set_write_buffer_limits(high=WRITE_HIGH)
        self.loop = asyncio.get_running_loop()
        self.last_read = self.loop.time()
        self.front.connections.add(self)

    def pause_writing(self) -> None:
        """The client is not reading its answers: stop reading its requests until it does."""
        self._pause("writes")

    def resume_writing(self) -> None:
        self._resume("writes")

    def _pause(self, why: str) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused.add(why)

    def _resume(self, why: str) -> None:
        self.paused.discard(why)
        if self.backlog:
            self._feed()  # may pause again
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        """The client closed the connection (Envoy's timeout fired, or it is shutting down).
        Answers in flight still finish, so that what Redis did for them is recorded here too
        (a lease it granted, say); they go nowhere (an app may ask ``gone``)."""
        self.front.connections.discard(self)
        self.answers.clear()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_read = now = self.loop.time()
        if self.in_head and not self.head_since:
            self.head_since = now
        # (A full write buffer has paused reading already: pause_writing.)
        if self.backlog or len(data) > FEED_SLICE or len(self.answers) >= self.max_pending:
            self.backlog += data
            self._feed()
        else:  # the usual case, one check: parsed as it came, no copy
            self._parse(data)

    def _feed(self, force: bool = False) -> None:
        """Parse the bytes received, FEED_SLICE at a time, while the answers they make have
        room (``force``: all of them, at EOF); the rest waits, with reading paused, until the
        client has read enough. A read of many tiny pipelined requests thus never makes more
        answers at once than ``max_pending`` and one slice's."""
        while self.backlog and not self.closing:
            if not force and self._full():
                self._pause("answers")
                return
            piece, self.backlog = self.backlog[:FEED_SLICE], self.backlog[FEED_SLICE:]
            self._parse(piece)
        if self.closing:
            self.backlog = b""

    def _parse(self, piece: bytes) -> None:
        """Feed ``piece`` to the parser; refuse what it or a limit rejects."""
        began = self.messages
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "bad_request", "protocol upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            # A callback's BadRequest comes wrapped in HttpParserCallbackError.
            bad = exc.__context__ or exc.__cause__
            if isinstance(bad, BadRequest):
                self._refuse(bad.status, bad.code, str(bad))
            else:
                self._refuse(400, "bad_request", f"malformed HTTP request: {exc}")
            return
        if self.in_head and self.messages == began:  # the piece fell within one head
            self.head_bytes += len(piece)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._refuse(
                    431, "headers_too_large", f"a request head over {MAX_HEAD_BYTES} bytes"
                )

    def _full(self) -> bool:
        """Whether the answers waiting for this client are as many as it may have."""
        pending = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return len(self.answers) >= self.max_pending or pending > WRITE_HIGH

    def eof_received(self) -> bool:
        """The client half-closed: answer what it sent, then close."""
        self._feed(force=True)  # what is left of the last read
        self.closing = self.hung_up = True
        self._flush()
        return True  # keep the write side open until the answers are out

    # -- httptools callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()
        self.messages += 1
        self.in_head = True
        self.head_bytes = 0
        self.head_since = self.last_read  # the read this head began in

    def on_headers_complete(self) -> None:
        self.in_head = False  # (head_since runs on: the body must come in time too)

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
        if lowered not in self.read_headers:  # kept only what the app reads
            return
        key = lowered.decode("latin-1")
        text = value.decode("latin-1")
        # A repeated header joins with a comma, as HTTP says a list header may.
        self.headers[key] = f"{self.headers[key]},{text}" if key in self.headers else text

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.app.max_body:
            raise BadRequest(413, "body_too_large", f"bodies are limited to {self.app.max_body}")
        if self.app.keeps_body:
            self.body.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive() and not self.front.draining_hard
        self.head_since = 0.0
        loop = asyncio.get_running_loop()
        body = b"".join(self.body) if self.body else b""
        try:
            request = Request(self.parser.get_method(), self.url, self.headers, body, keep_alive)
            answer = self.app.respond(self, request)
        except Exception:  # a bug: fail closed with a clear answer
            log.exception("http_request_failed")
            answer = FAILED
        if isinstance(answer, bytes):  # no task needed
            fut: asyncio.Future[bytes] = loop.create_future()
            fut.set_result(answer)
        else:  # (one that raises is answered FAILED: _flush)
            fut = asyncio.ensure_future(answer)
        self.answers.append(fut)
        fut.add_done_callback(self._on_answer)
        self.in_head = True  # what comes next is the next request's head
        if not keep_alive:
            self.closing = True

    @property
    def gone(self) -> bool:
        """Whether an answer made now would reach no one: the client hung up (Envoy does so
        when its timeout fires) or the connection is closed. (A client that only half-closed
        counts as gone too.)"""
        return self.hung_up or self.transport is None or self.transport.is_closing()

    # -- answers -------------------------------------------------------------------------------
    def _on_answer(self, fut: asyncio.Future[bytes]) -> None:
        if not fut.cancelled() and (error := fut.exception()) is not None:
            # A bug: answered FAILED (_flush), never a dropped connection.
            log.error("http_request_failed", exc_info=error)
        self._flush()

    def _flush(self) -> None:
        """Write every finished answer at the head of the queue, in request order."""
        if self.transport is None or self.transport.is_closing():
            return
        out = []
        while self.answers and self.answers[0].done():
            fut = self.answers.popleft()
            if fut.cancelled():
                continue
            out.append(FAILED if fut.exception() is not None else fut.result())
        if out:
            self.transport.write(b"".join(out))
        if "answers" in self.paused and not self._full():
            self._resume("answers")
        if self.closing and not self.answers:
            self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer bad input once, after what came before it, and read nothing more."""
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        fut.set_result(error(status, code, message))
        self.answers.append(fut)
        self.closing = True
        self._flush()

    @property
    def idle(self) -> bool:
        return not self.answers

    def sweep(self, now: float, limits: HttpLimits) -> None:
        """Close this connection if it is idle too long, or its head is too slow (408)."""
        if self.transport is None or self.transport.is_closing() or self.closing:
            return
        if self.head_since and not self.answers and now - self.head_since > limits.head_s:
            self._refuse(408, "request_timeout", f"a request took over {limits.head_s:g} s")
        elif self.idle and not self.head_since and now - self.last_read > limits.idle_s:
            self.transport.close()


FAILED = error(500, "internal_error", "the server failed on this request")
