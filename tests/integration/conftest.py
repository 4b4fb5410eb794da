"""Fixtures for the integration tier: the Stripe stand-in, in process, on a free port."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

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
