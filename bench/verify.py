"""`make bench`, row 2b: the management API's ``POST /v1/keys/verify`` beside an HTTP-mode
check, both straight from wrk (no Envoy), in alternating rounds of one run.

Both run the one check engine (authz/engine.py) on the same key; verify adds what an API call
is: the operator token, the token's rate, the JSON body and answer. The goal (issue 24):
verify's CPU per call within 2x an HTTP-mode check's. Verify is measured on both its
listeners: its own port (the lean HTTP front, api/verify_front.py: what the goal is about) and
the API's aiohttp port, beside aiohttp's own floor (an empty handler,
bench/aiohttp_ceiling.py), which alone costs about what a whole HTTP-mode check does.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.load import wrk
from bench.probes import cpu_seconds
from devkit.stack import Stack, free_port, port_open
from tollway.api_tokens import ApiTokens
from tollway.audit import AuditLog
from tollway.keys import KeyHasher
from tollway.redis_client import connect

ROUNDS = 3
HERE = Path(__file__).parent


def _token(redis_url: str) -> str:
    async def make() -> str:
        redis = connect(redis_url)
        try:
            plaintext, _ = await ApiTokens(redis, KeyHasher(), AuditLog(redis)).create(
                "bench", {"verify"}
            )
            return plaintext
        finally:
            await redis.aclose()

    return asyncio.run(make())


def _cpu_per_call(pid: int, load: Callable[[], dict[str, float]]) -> tuple[float, dict[str, float]]:
    cpu0 = cpu_seconds([pid])
    d = load()
    return (cpu_seconds([pid]) - cpu0) / max(d["n"], 1.0) * 1e6, d


def verify_beside_check(stack: Stack, key: str, seconds: int, row: Callable[..., Any]) -> None:
    """authz must be running in HTTP mode with one worker. Starts the API and the aiohttp
    floor (bench/aiohttp_ceiling.py), measures, stops them."""
    stack.start("api")
    floor_port = free_port()
    argv = [sys.executable, str(HERE / "aiohttp_ceiling.py"), "--port", str(floor_port)]
    stack.start_process("aiohttp-floor", argv, lambda: port_open(floor_port))
    try:
        token = _token(stack.effective_redis_url)
        body = json.dumps({"key": key})
        auth = {"Authorization": f"Bearer {token}"}
        api_url = f"http://127.0.0.1:{stack.ports.api}/v1/keys/verify"
        lean_url = f"http://127.0.0.1:{stack.ports.api_verify}/v1/keys/verify"
        check_url = f"http://127.0.0.1:{stack.ports.authz}/check/v1/things"

        def verify() -> dict[str, float]:
            return wrk(lean_url, seconds, None, conns=32, post=body, headers=auth)

        def on_aiohttp() -> dict[str, float]:
            return wrk(api_url, seconds, None, conns=32, post=body, headers=auth)

        def check() -> dict[str, float]:
            return wrk(check_url, seconds, key, conns=32)

        def floor() -> dict[str, float]:
            url = f"http://127.0.0.1:{floor_port}/v1/keys/verify"
            return wrk(url, seconds, None, conns=32, post=body, headers=auth)

        wrk(lean_url, 2, None, conns=32, post=body, headers=auth)  # warm: connections, scripts
        api_pid, authz_pid = stack.procs["api"].popen.pid, stack.procs["authz"].popen.pid
        floor_pid = stack.procs["aiohttp-floor"].popen.pid
        checks, verifies, aiohttps, floors = [], [], [], []
        for _ in range(ROUNDS):
            checks.append(_cpu_per_call(authz_pid, check))
            verifies.append(_cpu_per_call(api_pid, verify))
            aiohttps.append(_cpu_per_call(api_pid, on_aiohttp))
            floors.append(_cpu_per_call(floor_pid, floor))
        runs_of = {"check": checks, "verify": verifies, "aiohttp": aiohttps, "floor": floors}
        for label, runs in runs_of.items():
            errors = sum(d["errors"] for _, d in runs)
            assert errors == 0, f"{label}: {errors:.0f} non-2xx answers"
        check_us = statistics.median(c for c, _ in checks)
        verify_us = statistics.median(c for c, _ in verifies)
        floor_us = statistics.median(c for c, _ in floors)
        aiohttp_us = statistics.median(c for c, _ in aiohttps)
        rps = statistics.median(d["rps"] for _, d in verifies)
        p50 = statistics.median(d["p50"] for _, d in verifies)
        row(
            "2b. verify on its own port (the lean front): POST /v1/keys/verify, calls/s, wrk "
            "direct; its CPU per call (÷ an HTTP-mode check's, same run; goal ≤ 2)",
            f"{rps:,.0f}  p50 {p50:.2f} ms; CPU {verify_us:.0f} µs/call vs {check_us:.0f} µs/check "
            f"({verify_us / check_us:.2f}), median of {ROUNDS} alternating rounds",
        )
        row(
            "   verify on the API's aiohttp port: CPU per call (÷ the HTTP check's)",
            f"{aiohttp_us:.0f} µs ({aiohttp_us / check_us:.2f})",
        )
        row(
            "   aiohttp alone (empty handler, the same POST): CPU per call (÷ the HTTP check's)",
            f"{floor_us:.0f} µs ({floor_us / check_us:.2f}): what serving verify on aiohttp "
            "costs before any of its work",
        )
    finally:
        stack.stop("aiohttp-floor")
        stack.stop("api")
