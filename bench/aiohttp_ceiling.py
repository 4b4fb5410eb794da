"""The management API's floor: aiohttp (what the API is served by, on uvloop) with a handler
that reads the body and answers a fixed JSON body. What one API call costs on this machine
before any of its work; bench/verify.py reports verify beside it.

    python bench/aiohttp_ceiling.py --port N
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import web


async def empty(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text='{"valid": true}', content_type="application/json")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    app = web.Application()
    app.router.add_post("/v1/keys/verify", empty)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=p.parse_args().port, access_log=None, print=None)
