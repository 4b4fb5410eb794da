"""Hostile webhook deliveries (hypothesis) against the real app and a real Redis.

Random bytes, deeply nested JSON, wrong types inside a validly signed event, and huge bodies
must each get a clear 4xx (or a 2xx for an event tollway may ignore), never a 5xx, and a
refused delivery must leave Redis exactly as it was.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.support import TEST_TIERS
from tollway.dead_letters import DeadLetters
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.redis_client import connect
from tollway.tiers import parse_tiers
from webhook.app import WebhookApp
from webhook.checkout import Checkouts
from webhook.gate import Gate
from webhook.metrics import WebhookMetrics
from webhook.processor import Processor
from webhook.subscription_states import SubscriptionStates

pytestmark = pytest.mark.integration
SECRET = "whsec_fuzz"
MAX_BODY = 64 * 1024
TABLE = parse_tiers(TEST_TIERS, "test")
NOW = int(time.time())

TEMPLATES: list[dict[str, Any]] = [
    {"id": "evt_1", "type": "customer.subscription.updated", "created": NOW, "data": {"object": {
        "id": "sub_1", "customer": "cus_1", "status": "active",
        "items": {"data": [{"price": {"id": "tollway_pro", "lookup_key": None},
                            "current_period_start": NOW, "current_period_end": NOW + 86400}]}}}},
    {"id": "evt_2", "type": "invoice.payment_failed", "created": NOW, "data": {"object": {
        "customer": "cus_1", "parent": {"subscription_details": {"subscription": "sub_1"}}}}},
    {"id": "evt_3", "type": "checkout.session.completed", "created": NOW, "data": {"object": {
        "id": "cs_1", "customer": "cus_1", "subscription": "sub_1", "payment_status": "paid",
        "metadata": {"tollway_tier": "pro"}}}},
    {"id": "evt_4", "type": "customer.deleted", "created": NOW, "data": {"object": {"id": "cus_1"}}},
]  # fmt: skip

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False),
              st.text(max_size=50)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)  # fmt: skip


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


@st.composite
def wrong_types(draw: st.DrawFn) -> bytes:
    """A template event with one field anywhere in it replaced by any JSON value."""
    ev = copy.deepcopy(draw(st.sampled_from(TEMPLATES)))
    ev["id"] = f"evt_fuzz{draw(st.integers(0, 10**9))}"
    where = draw(st.sampled_from(paths(ev)))
    parent = ev
    for step in where[:-1]:
        parent = parent[step]
    parent[where[-1]] = draw(json_values)
    return json.dumps(ev).encode()


bodies = st.one_of(
    st.binary(max_size=2000).map(lambda b: ("random bytes", b)),
    st.integers(100, 100_000).map(lambda n: ("deep json", b"[" * n + b"]" * n)),
    st.integers(1, 5000).map(lambda n: ("deep object", b'{"a":' * n + b"1" + b"}" * n)),
    wrong_types().map(lambda b: ("wrong types", b)),
    st.integers(MAX_BODY + 1, 4 * MAX_BODY).map(lambda n: ("huge", b'{"x": "' + b"a" * n + b'"}')),
    json_values.map(lambda v: ("any json", json.dumps(v).encode())),
)


async def snapshot(redis: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async for name in redis.scan_iter(count=1000):
        kind = await redis.type(name)
        out[name] = await redis.hgetall(name) if kind == "hash" else await redis.dump(name)
    return out


def test_hostile_deliveries_get_clear_answers_and_change_nothing(redis_server):
    loop = asyncio.new_event_loop()
    redis = connect(redis_server, timeout_s=5.0)
    keys = KeyStore(redis, KeyHasher())
    checkouts = Checkouts(redis, keys, 900)
    processor = Processor(
        keys,
        SubscriptionStates(redis, keys),
        checkouts,
        DeadLetters(redis),
        lambda: TABLE,
        3 * 86400,
    )
    app = WebhookApp(processor, checkouts, lambda: TABLE, [SECRET], 300, MAX_BODY,
                     WebhookMetrics(CollectorRegistry()), None, "", "",
                     Gate(redis, "", 0, 100)).build()  # fmt: skip
    client = TestClient(TestServer(app, host="127.0.0.1"), loop=loop)
    loop.run_until_complete(client.start_server())
    loop.run_until_complete(redis.flushdb())

    async def deliver(raw: bytes) -> tuple[int, bool]:
        before = await snapshot(redis)
        sig = _sign(raw)  # over the exact bytes sent, as Stripe signs them
        async with client.post(
            "/webhooks/stripe", data=raw, headers={"Stripe-Signature": sig}
        ) as r:
            body = await r.read()
            assert r.headers["content-type"].startswith("application/json"), body[:200]
            status = r.status
        return status, before == await snapshot(redis)

    seen: Counter[str] = Counter()

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(bodies)
    def prop(kind_raw: tuple[str, bytes]) -> None:
        kind, raw = kind_raw
        status, unchanged = loop.run_until_complete(deliver(raw))
        seen[f"{kind}: {status}"] += 1
        assert status < 500, (kind, status, raw[:200])
        if status >= 400:
            assert unchanged, (kind, status, raw[:200])

    try:
        prop()
        print(sorted(seen.items()))
        # Every kind of hostile input was tried, and valid-looking events were also applied.
        kinds = {k.split(":")[0] for k in seen}
        assert kinds == {
            "random bytes",
            "deep json",
            "deep object",
            "wrong types",
            "huge",
            "any json",
        }
        assert sum(seen.values()) >= 200
    finally:
        loop.run_until_complete(client.close())
        loop.run_until_complete(redis.aclose())
        loop.close()


def _sign(raw: bytes) -> str:
    import hashlib
    import hmac

    t = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"
