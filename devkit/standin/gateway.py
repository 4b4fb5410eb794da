"""What every /v1 and /v2 request goes through before and after its handler, as Stripe's API
edge would: the API key (or, for the v2 stream, the session token), injected faults,
Idempotency-Key replay, and each validation error rendered in Stripe's error shape."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from devkit.standin.forms import FormError
from devkit.standin.objects import NotFound
from devkit.standin.validation import ParamError, stripe_error

STREAM_PATH = "/v2/billing/meter_event_stream"


@dataclass
class Fault:
    path: str
    kind: str = "error"  # error | delay | reset | lost (handled, then the answer is dropped)
    status: int = 500
    times: int = 1
    retry_after: int | None = None
    delay_ms: int = 0


class Gateway:
    def __init__(self, session_valid: Callable[[str], bool]) -> None:
        self.session_valid = session_valid
        self.faults: list[Fault] = []
        # Idempotency-Key -> (status, body) of the first successful answer, replayed as Stripe does.
        self.idempotent: dict[str, tuple[int, str]] = {}
        self.calls: Counter[str] = Counter()  # API requests by path, for benches

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        fault = None
        if request.path.startswith(("/v1/", "/v2/")):
            self.calls[request.path] += 1
            refused = self._authenticate(request)
            if refused is not None:
                return refused
            fault = self._take_fault(request.path)
            if fault is not None:
                if fault.delay_ms:
                    await asyncio.sleep(fault.delay_ms / 1000)
                if fault.kind == "reset":
                    _drop(request)
                if fault.kind == "error":
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
                    kind = "rate_limit_error" if fault.status == 429 else "api_error"
                    return stripe_error(fault.status, "Injected fault", kind=kind, headers=headers)
        idem = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if idem and idem in self.idempotent:
            status, body = self.idempotent[idem]
            return web.Response(
                status=status,
                text=body,
                content_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        try:
            resp: web.Response = await handler(request)
        except ParamError as exc:
            return stripe_error(400, str(exc), exc.param, exc.code)
        except FormError as exc:
            return stripe_error(400, str(exc), exc.param, "parameter_invalid")
        except NotFound as exc:
            return stripe_error(404, str(exc), "id", "resource_missing")
        if idem and 200 <= resp.status < 300 and resp.text is not None:
            self.idempotent[idem] = (resp.status, resp.text)
        if fault is not None and fault.kind == "lost":
            _drop(request)  # Stripe did the work; the answer never arrives
        return resp

    def _authenticate(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if request.path == STREAM_PATH:
            if not self.session_valid(auth.removeprefix("Bearer ")):
                return stripe_error(
                    401,
                    "The meter event session token is invalid or expired.",
                    kind="authentication_error",
                )
        elif not auth.startswith("Bearer sk_") and not auth.startswith("Bearer rk_"):
            return stripe_error(401, "You did not provide an API key.")
        return None

    def _take_fault(self, path: str) -> Fault | None:
        fault = next((f for f in self.faults if path.startswith(f.path) and f.times > 0), None)
        if fault is not None:
            fault.times -= 1
        return fault


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError
