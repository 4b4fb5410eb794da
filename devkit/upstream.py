"""A demo upstream that echoes what it received as JSON: method, path and every header.

``python -m devkit.upstream --port 8080``. Headers come back as a list of [name, value]
pairs, so duplicates stay visible.
"""

from __future__ import annotations

import argparse
import sys

from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "path": request.path_qs,
            "headers": [[k.lower(), v] for k, v in request.headers.items()],
        }
    )


def app() -> web.Application:
    a = web.Application()
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
