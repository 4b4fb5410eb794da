"""The one place an aiohttp service turns an unexpected exception into an answer: logged with
its path, answered by the service's own ``respond`` (JSON for the webhook service, a page for
the portal), never aiohttp's bare 500. HTTP exceptions pass through as the handler meant them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tollway.logs import fields

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def last_resort(log: logging.Logger, respond: Callable[[web.Request], web.Response]) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unhandled", extra=fields(path=request.path))
            return respond(request)

    return middleware
