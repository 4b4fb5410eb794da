"""The lean reference (issue 25): what one Redis round trip per check costs through Envoy's
HTTP ext_authz without any of tollway's own work. uvloop + httptools; for each request one
EVALSHA (INCR, PEXPIRE, PTTL on a key derived from x-api-key) over one hiredis
``asyncio.Protocol`` connection, the commands of one loop tick written together; a 200 with
three RateLimit headers. No key lookup, no tiers, no quota, no breaker, no deadline: a floor
for the same round trip, not a rival design. ``make bench`` puts it behind the same Envoy
listener setup as authz (bench/listeners.py).

    python bench/reference.py --port N --redis-port R
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from collections import deque
from typing import Any

import hiredis
import httptools
import uvloop

SCRIPT = (
    "local n = redis.call('INCR', KEYS[1]) "
    "if n == 1 then redis.call('PEXPIRE', KEYS[1], 1000) end "
    "return {n, redis.call('PTTL', KEYS[1])}"
)
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)


class Redis(asyncio.Protocol):
    """One connection; commands sent in one write per loop tick; replies to futures, in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.outgoing: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            fut = self.waiting.popleft()
            if not fut.done():  # else its caller gave up (a cancelled gRPC call)
                fut.set_result(reply)

    def call(self, *args: str | int | bytes) -> asyncio.Future[Any]:
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self._write)
        self.outgoing.append(hiredis.pack_command(args))  # type: ignore[arg-type]
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        return fut

    def evalsha(self, name: bytes) -> asyncio.Future[Any]:
        """The script on key ``name``: its reply, [count, ms to live]."""
        return self.call("EVALSHA", SHA, 1, name)

    def _write(self) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()


class Check(asyncio.Protocol):
    """One HTTP/1.1 connection from Envoy: each request answered in order."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.parser = httptools.HttpRequestParser(self)
        self.key = b""
        self.answers: deque[asyncio.Future[bytes]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-api-key":
            self.key = value

    def on_message_complete(self) -> None:
        fut = asyncio.ensure_future(self._answer(self.key))
        self.key = b""
        self.answers.append(fut)
        fut.add_done_callback(self._flush)

    async def _answer(self, key: bytes) -> bytes:
        n, ttl = await self.redis.evalsha(reference_key(key))
        return (
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nratelimit-limit: 1000000\r\n"
            b"ratelimit-remaining: %d\r\nratelimit-reset: %d\r\n\r\n" % (max(0, 10**6 - n), ttl)
        )

    def _flush(self, _: object) -> None:
        while self.answers and self.answers[0].done():
            self.transport.write(self.answers.popleft().result())  # type: ignore[attr-defined]


def reference_key(key: bytes) -> bytes:
    """The Redis key the script counts on for an API key."""
    return b"ref:" + hashlib.sha256(key).hexdigest()[:16].encode()


async def load_script(redis_port: int) -> Redis:
    """A connection to the local Redis on ``redis_port``, with the script loaded."""
    _, redis = await asyncio.get_running_loop().create_connection(Redis, "127.0.0.1", redis_port)
    assert (await redis.call("SCRIPT", "LOAD", SCRIPT)).decode() == SHA
    return redis


async def serve(port: int, redis_port: int) -> None:
    redis = await load_script(redis_port)
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: Check(redis), "127.0.0.1", port, backlog=1024)
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-port", type=int, required=True)
    a = p.parse_args()
    uvloop.run(serve(a.port, a.redis_port))
