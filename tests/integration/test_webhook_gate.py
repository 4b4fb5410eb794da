"""The webhook service's /checkout and /keys/claim against a real Redis and the stand-in: for
the portal and the operator's backend when a token is set, else throttled per client; a
session id Stripe did not know costs one Stripe call, not one per claim."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from tests.support import TEST_TIERS
from tollway.dead_letters import DeadLetters
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.tiers import parse_tiers
from webhook.app import WebhookApp
from webhook.checkout import Checkouts
from webhook.gate import Gate
from webhook.metrics import WebhookMetrics
from webhook.processor import Processor
from webhook.subscription_states import SubscriptionStates

pytestmark = pytest.mark.integration
TOKEN = "9c1f0e7d2b4a68f3e5d7c9b1a3f5e7d9"


def service(redis, stripe, gate: Gate) -> aiohttp.web.Application:
    keys = KeyStore(redis, KeyHasher())
    checkouts = Checkouts(redis, keys, 900)
    table = parse_tiers(TEST_TIERS, "t")
    proc = Processor(keys, SubscriptionStates(redis, keys), checkouts, DeadLetters(redis), lambda: table,
                     3600, stripe=stripe)  # fmt: skip
    return WebhookApp(proc, checkouts, lambda: table, ["whsec_t"], 300, 1 << 20,
                      WebhookMetrics(CollectorRegistry()), stripe, "u", "u", gate).build()  # fmt: skip


async def test_with_a_backend_token_only_its_holder_gets_checkout_or_a_claim(redis, standin):
    _, stripe, _ = standin
    app = service(redis, stripe, Gate(redis, TOKEN, 0, 1))
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer é"}):
            r = await http.post("/checkout", json={"tier": "pro"}, headers=headers)
            assert (r.status, (await r.json())["error"]["code"]) == (401, "unauthorized")
            r = await http.get("/keys/claim?session_id=cs_test_1", headers=headers)
            assert r.status == 401
        mine = {"Authorization": f"Bearer {TOKEN}"}
        # The holder (the portal) throttles its own clients: no limit here (per_client is 1).
        for _ in range(3):
            r = await http.get("/keys/claim?session_id=cs_test_nothing", headers=mine)
            assert r.status == 404


async def test_without_a_token_each_client_is_throttled(redis, standin):
    """Open paths: at most per_client of each per client address, 429 after."""
    _, stripe, _ = standin
    app = service(redis, stripe, Gate(redis, "", 0, 2))
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        codes = [(await http.get(f"/keys/claim?session_id=cs_test_{i}")).status for i in range(3)]
        assert codes == [404, 404, 429]
        r = await http.post("/checkout", json={"tier": "nope"})
        assert r.status == 400  # its own count: checkouts are not claims


async def test_an_unknown_session_id_asks_stripe_once(redis, standin, monkeypatch):
    _, stripe, _ = standin
    app = service(redis, stripe, Gate(redis, "", 0, 100))
    calls = []
    real = stripe.v1.checkout.sessions.retrieve_async

    async def counted(*args, **kwargs):
        calls.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(stripe.v1.checkout.sessions, "retrieve_async", counted)
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        for _ in range(5):
            r = await http.get("/keys/claim?session_id=cs_test_unknown")
            assert r.status == 404
    assert len(calls) == 1
