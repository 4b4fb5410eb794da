"""A demo upstream, httpbin-style: it echoes what it received, and answers as told.

``python -m devkit.upstream --port 8080``.

- ``/status/<code>``: that status (100..599), with the echo as body;
- ``/usage/<n>``: 200 with ``x-tollway-usage: <n>`` (as given, so bad values can be tried;
  ``?status=<code>`` answers that status instead, ``?repeat=1`` sends the header twice);
- ``/reset``: closes the connection without an answer (Envoy answers 503 itself);
- ``/delay/<ms>``: 200 with the echo after holding the request that long (0..60000), counted
  in flight meanwhile; ``/inflight`` (straight to the upstream, not through Envoy): how many
  ``/delay`` requests are held now and the most held at once since the last
  ``/inflight?reset=1``;
- anything else: 200 with the echo: method, path and every header, as a list of
  [name, value] pairs, so duplicates stay visible.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import sys

from aiohttp import web
from multidict import CIMultiDict

USAGE_HEADER = "x-tollway-usage"  # envoy.yaml's header_to_metadata rule reads this name


def _echo(request: web.Request) -> dict[str, object]:
    return {
        "method": request.method,
        "path": request.path_qs,
        "headers": [[k.lower(), v] for k, v in request.headers.items()],
    }


def _status(raw: str | None, default: int = 200) -> int:
    if raw is None:
        return default
    if not (raw.isdigit() and 100 <= int(raw) <= 599):
        raise web.HTTPBadRequest(text=f"status must be 100..599, got {raw[:20]!r}\n")
    return int(raw)


async def echo(request: web.Request) -> web.Response:
    return web.json_response(_echo(request))


async def status(request: web.Request) -> web.Response:
    return web.json_response(_echo(request), status=_status(request.match_info["code"]))


async def usage(request: web.Request) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    headers.add(USAGE_HEADER, request.match_info["n"])
    if request.query.get("repeat") == "1":
        headers.add(USAGE_HEADER, request.match_info["n"])
    return web.json_response(
        _echo(request), status=_status(request.query.get("status")), headers=headers
    )


async def reset(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:  # RST rather than FIN: a crash, as the proxy sees one
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    raise web.HTTPServiceUnavailable()  # never reaches anyone: the connection is gone


MAX_DELAY_MS = 60_000
HELD = web.AppKey("held", dict)


async def delay(request: web.Request) -> web.Response:
    raw = request.match_info["ms"]
    if not (raw.isdigit() and int(raw) <= MAX_DELAY_MS):
        raise web.HTTPBadRequest(text=f"ms must be 0..{MAX_DELAY_MS}, got {raw[:20]!r}\n")
    held = request.app[HELD]
    held["now"] += 1
    held["most"] = max(held["most"], held["now"])
    try:
        await asyncio.sleep(int(raw) / 1000)
    finally:
        held["now"] -= 1
    return web.json_response(_echo(request))


async def inflight(request: web.Request) -> web.Response:
    held = request.app[HELD]
    shown = dict(held)
    if request.query.get("reset") == "1":
        held["most"] = held["now"]
    return web.json_response(shown)


def app() -> web.Application:
    a = web.Application()
    a[HELD] = {"now": 0, "most": 0}
    a.router.add_route("GET", "/inflight", inflight)
    a.router.add_route("*", "/delay/{ms}", delay)
    a.router.add_route("*", "/status/{code}", status)
    a.router.add_route("*", "/usage/{n}", usage)
    a.router.add_route("*", "/reset", reset)
    a.router.add_route("*", "/{tail:.*}", echo)
    return a


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tollway-upstream", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args(argv)
    web.run_app(app(), host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
