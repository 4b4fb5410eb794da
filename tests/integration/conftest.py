"""Fixtures for the integration tier: the Stripe stand-in, in process, on a free port; the
management API, as its own process, on the test's Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from devkit.stack import free_port, http_ok, wait_for
from devkit.standin.app import Standin
from devkit.standin.objects import World
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


API_PEPPER = "api-process-test-pepper-0123456789"


@pytest.fixture
def api_process(redis_server, tmp_path: Path):
    """``python -m api`` on a free port: (its port, its log file); stopped after the test."""
    port = free_port()
    env = {**os.environ, "TOLLWAY_KEY_PEPPER": API_PEPPER, "TOLLWAY_API_PER_TOKEN": "100000"}
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port),
         "--redis-url", redis_server],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), "api", 20)
        yield port, tmp_path / "api.log"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
