"""authz's HTTP front on a real loopback socket, with the servicer on a fake store: answers,
pipelining, bad input (malformed, huge, odd methods, half-closed) and fuzzed bytes. Never a
crash, never a dropped connection without an answer, never a 5xx from authz's own HTTP layer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.check_reply import CheckReply, Code
from authz.http_check import CheckApp
from authz.http_connection import (
    FEED_SLICE,
    MAX_HEAD_BYTES,
    MAX_HEADER_BYTES,
    WRITE_HIGH,
    HttpLimits,
)
from authz.http_front import HttpFront
from tests.unit.test_service import FakeStore, service
from tollway.keys import generate_key

KEY = generate_key()


class Running:
    def __init__(self, limits: HttpLimits | None = None) -> None:
        self.store = FakeStore()
        self.app = CheckApp(service(self.store).decide_http)
        self.front = HttpFront(self.app, limits=limits)
        self.port = 0

    async def __aenter__(self) -> Running:
        self.port = await self.front.start("127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.front.stop(0, 0.5)

    async def exchange(self, raw: bytes, half_close: bool = False) -> bytes:
        """Send ``raw``, read until the server closes (or 2 s pass)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(raw)
        await writer.drain()
        if half_close:
            writer.write_eof()
        out = b""
        try:
            async with asyncio.timeout(2):
                while chunk := await reader.read(65536):
                    out += chunk
        except TimeoutError:
            pass
        writer.close()
        return out


async def until(condition, within_s: float = 5.0) -> None:
    """Wait for ``condition()`` to hold, polling; fail if it does not within ``within_s``."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0.005)


def check(path: str = "/check/v1/things", headers: dict[str, str] | None = None,
          method: str = "GET", close: bool = False) -> bytes:  # fmt: skip
    lines = [f"{method} {path} HTTP/1.1", "host: authz"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a stream of HTTP/1.1 responses (each with content-length) into parts."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v for k, _, v in (x.partition(": ") for x in lines[1:])}
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        raw = rest[n:]
    return out


async def test_an_allowed_check_answers_200_with_identity_and_strips_the_key():
    async with Running() as r:
        r.store.outcome = CheckReply(Code.OK, "free", "cus_1", remaining=4, wait_ms=1000)
        (status, headers, body), = responses(await r.exchange(check(headers={"x-api-key": KEY}, close=True)))  # fmt: skip
    assert status == 200 and body == b""
    assert headers["x-tollway-customer"] == "cus_1" and headers["x-tollway-tier"] == "free"
    assert headers["ratelimit-remaining"] == "4"
    assert "x-api-key" in headers["x-envoy-auth-headers-to-remove"].split(",")


async def test_denials_keep_status_json_and_headers():
    async with Running() as r:
        r.store.outcome = CheckReply(Code.RATE, "free", "cus_1", wait_ms=900)
        raw = await r.exchange(check(headers={"x-api-key": KEY}) + check(close=True))
    (s1, h1, b1), (s2, h2, b2) = responses(raw)
    assert (s1, json.loads(b1)["error"]["code"], h1["retry-after"]) == (429, "rate_limited", "1")
    assert h1["x-tollway-reason"] == "rate_limited"
    assert (s2, json.loads(b2)["error"]["code"]) == (401, "missing_api_key")
    assert h2["www-authenticate"].startswith("Bearer")


async def test_pipelined_checks_are_answered_in_order():
    async with Running() as r:
        reqs = [check(headers={"x-api-key": KEY}) if i % 2 else check() for i in range(20)]
        raw = await r.exchange(b"".join(reqs) + check(close=True))
    statuses = [s for s, _, _ in responses(raw)]
    assert statuses == [401, 200] * 10 + [401]


async def test_route_terms_come_from_envoys_headers():
    async with Running() as r:
        await r.exchange(check(headers={"x-api-key": KEY, "x-tollway-cost": "5",
                                        "x-tollway-feature": ""}, close=True))  # fmt: skip
        (status, _, body), = responses(await r.exchange(check(headers={"x-api-key": KEY, "x-tollway-cost": "lots"}, close=True)))  # fmt: skip
        # The bucket's header is read too: a name that is not a bucket name is refused.
        (b_status, _, b_body), = responses(await r.exchange(check(headers={"x-api-key": KEY, "x-tollway-bucket": "Not A Name"}, close=True)))  # fmt: skip
    assert r.store.calls[0][2] == 5
    assert (status, json.loads(body)["error"]["code"]) == (503, "route_misconfigured")
    assert (b_status, json.loads(b_body)["error"]["code"]) == (503, "route_misconfigured")


async def test_health_and_unknown_paths():
    async with Running() as r:
        raw = await r.exchange(check("/healthz") + check("/other", close=True))
        (s1, _, b1), (s2, _, b2) = responses(raw)
        assert (s1, json.loads(b1)) == (200, {"status": "serving"})
        assert (s2, json.loads(b2)["error"]["code"]) == (404, "not_found")
        r.front.serving = False  # draining
        (s3, _, _), = responses(await r.exchange(check("/healthz", close=True)))  # fmt: skip
    assert s3 == 503


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"this is not http\r\n\r\n", 400, "bad_request"),
        (b"GET /check HTTP/1.1\r\nbad header line\r\n\r\n", 400, "bad_request"),
        (b"GET /check/" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long"),
        (b"GET /check HTTP/1.1\r\nx-big: " + b"v" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\n", 431,
         "headers_too_large"),
        (b"GET /check HTTP/1.1\r\n" + b"".join(b"h%d: v\r\n" % i for i in range(150)) + b"\r\n",
         431, "headers_too_large"),
        (b"POST /check HTTP/1.1\r\ncontent-length: 100000\r\n\r\n" + b"x" * 100000, 413,
         "body_too_large"),
    ],
)  # fmt: skip
async def test_bad_input_gets_a_clear_4xx_and_the_connection_closes(raw, status, code):
    async with Running() as r:
        got = responses(await r.exchange(raw))
    assert [(s, json.loads(b)["error"]["code"]) for s, _, b in got] == [(status, code)]


async def test_an_upgrade_is_answered_then_refused():
    """The request is checked like any other; switching protocols is refused, then closed."""
    async with Running() as r:
        raw = b"GET /check HTTP/1.1\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n"
        got = responses(await r.exchange(raw))
    assert [(s, json.loads(b)["error"]["code"]) for s, _, b in got] == [
        (401, "missing_api_key"), (400, "bad_request")]  # fmt: skip


async def test_odd_methods_are_checked_like_any_other():
    """Envoy forwards the client's method; whatever it is, the key decides."""
    async with Running() as r:
        raw = await r.exchange(check(method="PURGE", headers={"x-api-key": KEY}) +
                               check(method="DELETE", close=True))  # fmt: skip
    assert [s for s, _, _ in responses(raw)] == [200, 401]


async def test_a_half_closed_connection_gets_its_answers():
    async with Running() as r:
        raw = await r.exchange(check(headers={"x-api-key": KEY}) + check(), half_close=True)
    assert [s for s, _, _ in responses(raw)] == [200, 401]


async def test_a_failing_decision_is_a_clear_500_not_a_dropped_connection():
    async with Running() as r:

        async def broken(_headers):
            raise RuntimeError("bug")

        r.app.decide = broken
        (status, _, body), = responses(await r.exchange(check(close=True)))  # fmt: skip
    assert (status, json.loads(body)["error"]["code"]) == (500, "internal_error")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from([check(), check(headers={"x-api-key": KEY}), b"\r\n", b"GET ",
                             b"HTTP/1.1\r\n", b"content-length: 5\r\n", b"transfer-encoding: chunked\r\n",
                             b"\x00", b"\r\n\r\n0\r\n\r\n"]),
        ),
        max_size=8,
    )
)  # fmt: skip
def test_fuzzed_bytes_never_crash_the_server(chunks):
    """Whatever arrives, every answer is a well-formed HTTP response, none is a 5xx, and the
    server keeps serving the next connection."""

    async def go() -> None:
        async with Running() as r:
            raw = await r.exchange(b"".join(chunks), half_close=True)
            for status, _, _ in responses(raw):
                assert 200 <= status < 500
            (status, _, _), = responses(await r.exchange(check("/healthz", close=True)))  # fmt: skip
            assert status == 200

    asyncio.run(go())


async def test_a_decision_raising_at_once_is_a_clear_500_too():
    async with Running() as r:

        def broken(_headers):
            raise RuntimeError("bug")

        r.app.decide = broken
        (status, _, body), = responses(await r.exchange(check(close=True)))  # fmt: skip
    assert (status, json.loads(body)["error"]["code"]) == (500, "internal_error")


async def test_decisions_that_need_no_store_come_back_without_waiting():
    """No key, a malformed key: decided at once (the front writes them without a task); a
    key to look up comes back as something to await."""
    from authz.decision import Decision

    svc = service(FakeStore())
    assert isinstance(svc.decide_http({}), Decision)
    assert isinstance(svc.decide_http({"x-api-key": "tw_live_nope"}), Decision)
    pending = svc.decide_http({"x-api-key": KEY})
    assert not isinstance(pending, Decision)
    assert (await pending).allowed


async def test_an_allowed_answer_after_envoy_hung_up_is_counted_as_unheard():
    """Envoy's timeout fired and it closed the connection; the check still finishes (what
    Redis did is kept), and an allowed one is reported: counted, not served."""
    from authz.decision import Decision

    release, started = asyncio.Event(), asyncio.Event()
    unheard = []

    async def slow(_headers):
        started.set()
        await release.wait()
        return Decision(None)

    async with Running() as r:
        r.app.decide, r.app.on_unheard = slow, lambda d: unheard.append(1)
        _, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(check())
        await writer.drain()
        await asyncio.wait_for(started.wait(), 5)  # the check is being decided
        (conn,) = r.front.connections
        writer.close()
        await until(lambda: conn.hung_up)  # authz saw Envoy hang up
        assert unheard == []
        release.set()
        await until(lambda: unheard == [1])


async def test_a_request_arriving_byte_by_byte_is_read_whole():
    async with Running() as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        for byte in check(headers={"x-api-key": KEY}, close=True):
            writer.write(bytes([byte]))
            await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 2)
        writer.close()
    (status, headers, _), = responses(raw)  # fmt: skip
    assert status == 200 and headers["x-tollway-customer"] == "cus_1"


async def test_an_endless_header_value_is_refused_after_the_head_limit():
    """A header value that never ends, fed 4 KiB at a time, is refused 431 once the head is
    over MAX_HEAD_BYTES: httptools holds at most that plus one read (before, nothing fired
    until the value ended, and 10 MB cost 9.5 s of CPU)."""
    async with Running() as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(b"GET /check/x HTTP/1.1\r\nx-junk: ")
        sent, answer = 0, b""
        while sent < 4 * MAX_HEAD_BYTES and not answer:
            writer.write(b"a" * 4096)
            sent += 4096
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(65536), 0.001)
        if not answer:
            answer = await asyncio.wait_for(reader.read(65536), 2)
        writer.close()
    (status, _, body), = responses(answer)  # fmt: skip
    assert status == 431 and json.loads(body)["error"]["code"] == "headers_too_large"
    assert sent < MAX_HEAD_BYTES + 256 * 1024, sent


async def test_a_client_that_never_reads_costs_bounded_memory():
    """20,000 pipelined checks from a client that reads nothing: authz stops reading once its
    write buffer is full, so what it holds for the connection is bounded by its limits, not
    by what the client sends (before: every answer, about 6 MB)."""
    async with Running() as r:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", r.port))
        sock.setblocking(False)
        _, writer = await asyncio.open_connection(sock=sock)
        request = check(headers={"x-api-key": KEY})
        writer.write(request * 20_000)  # never drained: the client's own buffer holds the rest
        for _ in range(200):  # until authz stops reading (at once on an idle machine)
            await asyncio.sleep(0.05)
            if r.front.connections and next(iter(r.front.connections)).paused:
                break
        (conn,) = r.front.connections
        held = conn.transport.get_write_buffer_size()
        assert conn.paused  # reading stopped
        # Answers waiting: max_pending, plus those of the one slice that crossed it; written:
        # at most the high-water mark plus one batch of those (each well under 1 KiB); bytes
        # read and not parsed: at most one read (uvloop: 256 KiB).
        most = r.front.limits.max_pending + FEED_SLICE // len(request)
        assert len(conn.answers) <= most, len(conn.answers)
        assert held <= WRITE_HIGH + most * 1024, held
        assert len(conn.backlog) <= 256 * 1024, len(conn.backlog)
        print(f"[non-reading client] write buffer {held}, unparsed {len(conn.backlog)}")
        writer.transport.abort()


async def test_an_idle_connection_is_closed():
    """A connection with nothing in flight is closed after idle_s; one that sent half a head
    is answered 408 after head_s."""
    async with Running(HttpLimits(idle_s=0.2, head_s=0.2)) as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, nothing said
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(b"GET /check/x HTTP/1.1\r\nx-api-key: ")
        (status, _, body), = responses(await asyncio.wait_for(reader.read(), 2))  # fmt: skip
        writer.close()
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"


async def test_connections_past_the_cap_are_closed_at_once():
    """With max_connections 2, a third connection is closed before it is read; the first two
    still answer."""
    async with Running(HttpLimits(max_connections=2)) as r:
        kept = [await asyncio.open_connection("127.0.0.1", r.port) for _ in range(2)]
        await until(lambda: len(r.front.connections) == 2)  # both accepted by authz
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(check(headers={"x-api-key": KEY}))
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        for reader, writer in kept:
            writer.write(check(headers={"x-api-key": KEY}))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert head.startswith(b"HTTP/1.1 200")
            writer.close()
        assert r.front.refused_connections == 1
