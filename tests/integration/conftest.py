"""Fixtures for the integration tier: the Stripe stand-in, in process, on a free port; the
management API in process (its aiohttp app and verify's listener) and as its own process, on
the test's Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from api.server import build, pipeline
from api.settings import ApiSettings
from api.verify_front import VerifyApp
from authz.engine import CheckEngine
from authz.http_connection import HttpLimits
from authz.http_front import HttpFront
from devkit.stack import free_port, http_ok, wait_for
from devkit.standin.app import Standin
from devkit.standin.objects import World
from tollway.api_tokens import SCOPES, ApiTokens
from tollway.audit import AuditLog
from tollway.keys import KeyHasher
from tollway.settings import StripeSettings
from tollway.stripe_api import Stripe


@pytest.fixture
async def standin():
    world = World("http://127.0.0.1")
    s = Standin(world, retry_delays=(0.05, 0.05, 0.05))
    server = TestServer(s.build(), host="127.0.0.1")
    await server.start_server()
    world.base_url = str(server.make_url("")).rstrip("/")
    client = Stripe(StripeSettings(stripe_api_base=world.base_url))
    yield s, client, world.base_url
    await client.aclose()
    await server.close()


PEPPER = "api-test-pepper-0123456789"


class Api:
    """A client on the app, with a token of every scope, or the ones asked for; verify's own
    listener at ``verify_url``."""

    def __init__(
        self, client: TestClient, redis: object, verify_url: str, pepper: str = PEPPER
    ) -> None:
        self.client = client
        self.redis = redis
        self.verify_url = verify_url
        self.tokens = ApiTokens(redis, KeyHasher(pepper.encode()), AuditLog(redis))

    async def token(self, scopes: set[str] = SCOPES) -> str:
        plaintext, _ = await self.tokens.create("test", set(scopes))
        return plaintext

    async def call(self, method: str, path: str, token: str, **kw: object) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}  # type: ignore[dict-item]
        async with self.client.request(method, path, headers=headers, **kw) as r:
            return r.status, await r.json()

    async def verify(self, listener: str, token: str, **kw: object) -> tuple[int, dict]:
        """``POST /v1/keys/verify`` on the API's port (``listener`` "api") or verify's own."""
        if listener == "api":
            return await self.call("POST", "/v1/keys/verify", token, **kw)
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}  # type: ignore[dict-item]
        async with self.client.session.post(self.verify_url, headers=headers, **kw) as r:
            return r.status, await r.json()


@pytest.fixture
async def api(redis, redis_server, tmp_path):
    async with running_api(redis, redis_server, tmp_path) as a:
        yield a


@asynccontextmanager
async def running_api(
    redis: object, redis_server: str, tmp_path: Path, pepper: str = PEPPER
) -> AsyncIterator[Api]:
    """The management API in process with TOLLWAY_KEY_PEPPER=``pepper``; its tokens are made
    under the first pepper listed."""
    settings = ApiSettings(
        redis_url=redis_server, key_pepper=pepper, per_token=50, spool_dir=tmp_path
    )
    engine = CheckEngine(settings, "api-test", stamps=False, registry=CollectorRegistry())
    await engine.start()
    steps = pipeline(settings, redis, engine)
    client = TestClient(TestServer(build(settings, steps), host="127.0.0.1"))
    await client.start_server()
    front = HttpFront(VerifyApp(steps, settings.max_body_bytes), HttpLimits(head_s=1.0))
    port = await front.start("127.0.0.1", 0)
    try:
        yield Api(client, redis, f"http://127.0.0.1:{port}/v1/keys/verify", pepper.split(",")[0])
    finally:
        await front.stop(0, 1.0)
        await client.close()
        await engine.stop()


API_PEPPER = "api-process-test-pepper-0123456789"


@pytest.fixture
def api_process(redis_server, tmp_path: Path):
    """``python -m api`` on free ports: (its port, its log file, verify's port); stopped after
    the test."""
    port, verify_port = free_port(), free_port()
    env = {**os.environ, "TOLLWAY_KEY_PEPPER": API_PEPPER, "TOLLWAY_API_PER_TOKEN": "100000"}
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port),
         "--verify-port", str(verify_port), "--redis-url", redis_server],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), "api", 20)
        yield port, tmp_path / "api.log", verify_port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
