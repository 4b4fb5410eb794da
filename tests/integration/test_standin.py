"""The Stripe stand-in through the real stripe SDK: validation like Stripe, faults, webhooks."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import stripe
from aiohttp import web
from aiohttp.test_utils import TestServer

from tollway.dead_letters import DeadLetters
from webhook.signature import verify

pytestmark = pytest.mark.integration


async def price(client) -> str:
    prod = await client.v1.products.create_async({"name": "Pro"})
    p = await client.v1.prices.create_async({"product": prod.id, "currency": "usd", "unit_amount": 100,
                                             "recurring": {"interval": "month"}, "lookup_key": "pro"})  # fmt: skip
    return str(p.id)


@pytest.mark.parametrize(
    ("params", "message", "param"),
    [
        (
            {"mode": "subscription", "success_url": "u", "bogus": "1"},
            "Received unknown parameter: bogus",
            "bogus",
        ),
        ({"success_url": "u"}, "Missing required param: mode.", "mode"),
        (
            {"mode": "subscription", "success_url": "u"},
            "Missing required param: line_items.",
            "line_items",
        ),
        (
            {"mode": "rent", "success_url": "u"},
            "Invalid mode: must be one of payment, setup, or subscription",
            "mode",
        ),
        (
            {"mode": "subscription", "success_url": "u", "metadata": {"k" * 41: "v"}},
            f"Metadata keys can be up to 40 characters long: {'k' * 41}",
            f"metadata[{'k' * 41}]",
        ),
    ],
)
async def test_checkout_session_validation_matches_stripe(standin, params, message, param):
    """Bad parameters get Stripe's 400 invalid_request_error with message and param."""
    _, client, _ = standin
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.checkout.sessions.create_async(params)
    assert (err.value.http_status, err.value.user_message, err.value.param) == (400, message, param)


async def test_unknown_objects_are_404_resource_missing(standin):
    """Retrieving what does not exist is 404 resource_missing."""
    _, client, _ = standin
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.subscriptions.retrieve_async("sub_missing")
    assert (err.value.http_status, err.value.code) == (404, "resource_missing")


async def test_api_key_is_required(standin):
    """Without a Bearer secret key the API answers 401."""
    _, _, base = standin
    async with aiohttp.ClientSession() as http, http.get(f"{base}/v1/customers/cus_x") as r:
        assert r.status == 401


async def test_injected_500_is_retried_by_the_sdk_and_429_carries_retry_after(standin):
    """A one-off 500 is survived by the SDK's retries; a 429 fault says Retry-After."""
    s, client, base = standin
    pid = await price(client)
    s.faults.append(
        __import__("devkit.standin.app", fromlist=["Fault"]).Fault(path="/v1/checkout/sessions")
    )
    cs = await client.v1.checkout.sessions.create_async(
        {"mode": "subscription", "success_url": "u", "line_items": [{"price": pid, "quantity": 1}]}
    )
    assert cs.status == "open" and s.faults[0].times == 0
    async with aiohttp.ClientSession() as http:
        await http.post(
            f"{base}/_standin/faults", json={"path": "/v1/prices", "status": 429, "retry_after": 7}
        )
        async with http.get(
            f"{base}/v1/prices", headers={"Authorization": "Bearer sk_test_x"}
        ) as r:
            assert (r.status, r.headers["Retry-After"]) == (429, "7")


async def test_lookup_keys_find_prices(standin):
    """prices.list(lookup_keys=[...]) finds the price created with that lookup key."""
    _, client, _ = standin
    pid = await price(client)
    found = await client.v1.prices.list_async({"lookup_keys": ["pro"]})
    assert [p.id for p in found.data] == [pid]


async def test_completed_checkout_sends_signed_webhooks_and_retries_failures(standin):
    """Completing a checkout delivers signed events in order; a 500 answer is retried."""
    s, client, _ = standin
    received, answers = [], [500]

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        event = verify(raw, request.headers.get("Stripe-Signature"), ["whsec_t"], 300)
        received.append(event["type"])
        return web.Response(status=answers.pop() if answers else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    s.webhook_url, s.webhook_secret = str(server.make_url("/hook")), "whsec_t"
    try:
        pid = await price(client)
        cs = await client.v1.checkout.sessions.create_async(
            {
                "mode": "subscription",
                "success_url": "u",
                "line_items": [{"price": pid}],
                "customer_email": "a@b.co",
            }
        )
        s.world.complete_checkout(cs.id)
        for _ in range(100):
            if len(received) >= 5:
                break
            await asyncio.sleep(0.05)
        assert received == ["customer.created", "customer.created", "customer.subscription.created",
                            "invoice.paid", "checkout.session.completed"]  # fmt: skip
        assert [d["status"] for d in s.deliveries[:2]] == [500, 200]
        got = await client.v1.checkout.sessions.retrieve_async(cs.id)
        assert (got.status, got.payment_status) == ("complete", "paid")
        sub = await client.v1.subscriptions.retrieve_async(got.subscription)
        # (default=str: the SDK reads unit_amount_decimal, which real Stripe prices carry too,
        # as a Decimal)
        assert sub.items.data[0].price.id == pid and json.dumps(sub.to_dict(), default=str)
    finally:
        await server.close()


async def test_refetch_mode_applies_stripes_current_state(standin, redis):
    """With TOLLWAY_WEBHOOK_REFETCH, an old event makes tollway fetch the subscription from
    Stripe (here the stand-in) and apply what it says now."""
    from tests.support import TEST_TIERS
    from tollway.key_store import KeyStore
    from tollway.keys import KeyHasher
    from tollway.records import KeyStatus
    from tollway.tiers import parse_tiers
    from webhook.checkout import Checkouts
    from webhook.processor import Processor
    from webhook.subscription_states import SubscriptionStates

    s, client, _ = standin
    prod = await client.v1.products.create_async({"name": "Pro"})
    pid = (await client.v1.prices.create_async({"product": prod.id, "currency": "usd",
                                                "lookup_key": "tollway_pro"})).id  # fmt: skip
    cs = await client.v1.checkout.sessions.create_async(
        {"mode": "subscription", "success_url": "u", "line_items": [{"price": pid}]}
    )
    sub_id = s.world.complete_checkout(cs.id)["subscription"]
    keys = KeyStore(redis, KeyHasher())
    table = parse_tiers(TEST_TIERS, "t")
    proc = Processor(keys, SubscriptionStates(redis, keys), Checkouts(redis, keys, 900), DeadLetters(redis), lambda: table,
                     3600, stripe=client, refetch=True)  # fmt: skip
    stale = {"id": "evt_old", "type": "customer.subscription.created", "created": 1, "data": {"object": {
        "id": sub_id, "customer": "cus_x", "status": "incomplete", "items": {"data": []}}}}  # fmt: skip
    assert await proc.handle(stale) == "applied"
    state = await proc.states.state(sub_id)
    assert (state.status, state.tier) == (KeyStatus.ACTIVE, "pro")


async def test_claim_before_the_webhook_issues_the_key_once(standin, redis):
    """A claim that beats the webhook asks Stripe, issues the key itself, and the late webhook
    finds it issued: one key per session, whichever comes first."""
    from aiohttp.test_utils import TestClient
    from prometheus_client import CollectorRegistry

    from tests.support import TEST_TIERS
    from tollway.key_store import KeyStore
    from tollway.keys import KeyHasher, parse_key
    from tollway.tiers import parse_tiers
    from webhook.app import WebhookApp
    from webhook.checkout import Checkouts
    from webhook.gate import Gate
    from webhook.metrics import WebhookMetrics
    from webhook.processor import Processor
    from webhook.subscription_states import SubscriptionStates

    s, client, _ = standin
    prod = await client.v1.products.create_async({"name": "Pro"})
    await client.v1.prices.create_async(
        {"product": prod.id, "currency": "usd", "lookup_key": "tollway_pro"}
    )
    keys = KeyStore(redis, KeyHasher())
    checkouts = Checkouts(redis, keys, 900)
    table = parse_tiers(TEST_TIERS, "t")
    proc = Processor(
        keys,
        SubscriptionStates(redis, keys),
        checkouts,
        DeadLetters(redis),
        lambda: table,
        3600,
        stripe=client,
    )
    app = WebhookApp(proc, checkouts, lambda: table, ["whsec_t"], 300, 1 << 20,
                     WebhookMetrics(CollectorRegistry()), client, "u", "u",
                     Gate(redis, "", 0, 100)).build()  # fmt: skip
    async with TestClient(aiohttp.test_utils.TestServer(app, host="127.0.0.1")) as http:
        r = await http.post("/checkout", json={"tier": "pro"})
        session = (await r.json())["id"]
        r = await http.get(f"/keys/claim?session_id={session}")
        assert (r.status, (await r.json())["error"]["code"]) == (409, "checkout_incomplete")
        s.world.complete_checkout(session)  # paid; no webhook delivered (no URL configured)
        r = await http.get(f"/keys/claim?session_id={session}")
        body = await r.json()
        assert r.status == 200 and parse_key(body["api_key"]) and body["tier"] == "pro"
        assert r.headers["cache-control"] == "no-store"
        late = next(e for e in s.world.events if e["type"] == "checkout.session.completed")
        assert await proc.handle(late) == "applied"
        sub = late["data"]["object"]["subscription"]
        assert await keys.owned(sub) == [body["key_id"]]
        r = await http.get(f"/keys/claim?session_id={session}")
        assert r.status == 410


async def test_the_customer_portal_updates_the_card_switches_plans_and_cancels(standin):
    """billing_portal.Session through the SDK, then its page: each action changes the world and
    emits the events Stripe would send."""
    s, client, base = standin
    pid = await price(client)
    other = (await client.v1.prices.create_async({
        "currency": "usd", "unit_amount": 9900, "product": (await client.v1.products.create_async(
            {"name": "Business"})).id, "recurring": {"interval": "month"},
        "lookup_key": "business"})).id  # fmt: skip
    cs = await client.v1.checkout.sessions.create_async({"mode": "subscription", "success_url": "u",
        "line_items": [{"price": pid}], "customer_email": "a@b.co"})  # fmt: skip
    done = s.world.complete_checkout(cs.id)
    sub = done["subscription"]
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.billing_portal.sessions.create_async({"customer": "cus_nobody"})
    bps = await client.v1.billing_portal.sessions.create_async(
        {"customer": done["customer"], "return_url": "http://portal.test/dashboard"}
    )
    assert bps.url.startswith(f"{base}/billing/bps_") and bps.return_url.endswith("/dashboard")
    s.world.payment(sub, paid=False)  # past_due: a new card pays it
    mark = len(s.world.events)
    async with aiohttp.ClientSession() as http:
        async with http.get(bps.url) as r:
            page = await r.text()
        assert (
            r.status == 200 and "past_due" in page and 'href="http://portal.test/dashboard"' in page
        )
        async with http.post(f"{bps.url}/card", data={"card": "4000 0000 0000 0077"}) as r:
            assert r.status == 200 and "Card ending 0077" in await r.text()
        assert s.world.get("subscription", sub)["status"] == "active"
        async with http.post(f"{bps.url}/switch", data={"subscription": sub, "price": other}) as r:
            assert r.status == 200
        assert s.world.get("subscription", sub)["items"]["data"][0]["price"]["id"] == other
        for bad in ({"subscription": sub, "price": "price_nope"}, {"subscription": "sub_nope"}):
            async with http.post(f"{bps.url}/switch", data=bad) as r:
                assert r.status == 400
        end = s.world.get("subscription", sub)["items"]["data"][0]["current_period_end"]
        async with http.post(f"{bps.url}/cancel_at_end", data={"subscription": sub}) as r:
            assert r.status == 200 and "Renew subscription" in await r.text()
        got = s.world.get("subscription", sub)
        pending = (got["status"], got["cancel_at_period_end"], got["cancel_at"])
        assert pending == ("active", True, end)
        async with http.post(f"{bps.url}/renew", data={"subscription": sub}) as r:
            assert r.status == 200 and "Cancel at period end" in await r.text()
        got = s.world.get("subscription", sub)
        assert (got["cancel_at_period_end"], got["cancel_at"]) == (False, None)
    # The same through the API, as an operator's script would: set, then taken back.
    updated = await client.v1.subscriptions.update_async(sub, {"cancel_at_period_end": True})
    assert (updated.cancel_at_period_end, updated.cancel_at) == (True, end)
    updated = await client.v1.subscriptions.update_async(sub, {"cancel_at_period_end": False})
    assert (updated.cancel_at_period_end, updated.cancel_at) == (False, None)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{bps.url}/cancel", data={"subscription": sub}) as r:
            assert r.status == 200 and "canceled" in await r.text()
        async with http.post(f"{bps.url}/card", data={"card": "12"}) as r:
            assert r.status == 400
        async with http.get(f"{base}/billing/bps_nope") as r:
            assert r.status == 404
    assert [e["type"] for e in s.world.events[mark:]] == [
        "customer.updated", "invoice.paid", "customer.subscription.updated",
        "customer.subscription.updated", "customer.subscription.updated",
        "customer.subscription.updated", "customer.subscription.updated",
        "customer.subscription.updated", "customer.subscription.deleted"]  # fmt: skip
