"""The whole subscription lifecycle from signed Stripe webhooks, as seen at the Envoy edge.

Real Envoy, 2 authz workers, the webhook service and the Stripe stand-in. After each Stripe
change the edge must show it within one second, on every worker.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from devkit.seed import seed_prices
from tests.e2e.conftest import Edge, Response, fetch, running_edge
from tests.support import TEST_TIERS
from tollway import schema
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.e2e
GRACE_S = 2
# Roomy buckets, so that the test's own polling is never what gets limited.
TIERS = TEST_TIERS.replace(
    "requests_per_second = 10.0\nburst = 20", "requests_per_second = 500.0\nburst = 500"
).replace("requests_per_second = 50.0\nburst = 60", "requests_per_second = 900.0\nburst = 900")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    env = {"TOLLWAY_GRACE_DAYS": str(GRACE_S / 86400)}
    assert TIERS.count("burst = 500") == 1 and TIERS.count("burst = 900") == 1
    with running_edge(tmp_path_factory.mktemp("lifecycle"), TIERS, workers=2, env=env) as e:
        yield e


PAY = b"card=4242424242424242"  # the stand-in's Checkout form: POSTed, it pays


def post_json(url: str, body: dict) -> dict:
    status, raw = fetch(url, json.dumps(body).encode(), {"content-type": "application/json"})
    assert status == 200, raw
    return json.loads(raw)


def trigger(edge: Edge, event: str, **kw: str) -> None:
    post_json(f"{edge.stack.standin_url}/_standin/trigger", {"event": event, **kw})


def within_1s(edge: Edge, key: str, ok: Callable[[Response], bool], what: str) -> Response:
    """Poll the edge until ``ok``; fail if that takes over a second. Then ten more requests
    (spread over both authz workers) must agree."""
    start = time.monotonic()
    while True:
        r = edge.get("/v1/things", key)
        if ok(r):
            break
        assert time.monotonic() - start < 1.0, (
            f"{what}: still {r.status} {r.body[:200]!r} after 1 s"
        )
        time.sleep(0.02)
    for _ in range(10):
        r = edge.get("/v1/things", key)
        assert ok(r), f"{what}: flapped to {r.status}"
    return r


def test_subscribe_pay_fail_grace_recover_upgrade_cancel(edge):
    """Subscribe → key; payment fails → grace (200 + warning) → 402; paid → 200; upgrade →
    new tier; cancel → 401. Each step visible at Envoy within a second."""
    table = parse_tiers(edge.stack.tiers.read_text(), "tiers")
    prices = asyncio.run(seed_prices(edge.stack.standin_url, table))
    hook = f"http://127.0.0.1:{edge.stack.ports.webhook}"

    session = post_json(f"{hook}/checkout", {"tier": "pro", "email": "e2e@example.com"})
    assert session["id"].startswith("cs_") and session["url"].startswith(edge.stack.standin_url)
    status, raw = fetch(session["url"], PAY)  # pays, then Checkout redirects to the claim
    assert status == 200, raw
    claim = json.loads(raw)
    key = claim["api_key"]
    edge.issued.append(key)
    assert claim["tier"] == "pro"
    sub = edge.redis.hget(schema.key_directory(claim["key_id"]), "account")  # its subscription

    r = within_1s(edge, key, lambda r: r.status == 200, "subscribed")
    assert r.upstream_saw("x-tollway-tier") == ["pro"]

    trigger(edge, "invoice.payment_failed", subscription=sub)
    r = within_1s(edge, key, lambda r: "x-tollway-warning" in r.headers, "past_due in grace")
    assert r.status == 200

    time.sleep(GRACE_S)
    r = within_1s(edge, key, lambda r: r.status == 402, "grace over")
    assert r.json()["error"]["code"] == "payment_required"

    trigger(edge, "invoice.paid", subscription=sub)
    r = within_1s(
        edge, key, lambda r: r.status == 200 and "x-tollway-warning" not in r.headers, "paid"
    )

    trigger(
        edge, "customer.subscription.updated", subscription=sub, price=prices["tollway_business"]
    )
    r = within_1s(edge, key, lambda r: r.upstream_saw("x-tollway-tier") == ["business"], "upgraded")
    assert r.headers["ratelimit-limit"] == "900"

    trigger(edge, "customer.subscription.deleted", subscription=sub)
    r = within_1s(edge, key, lambda r: r.status == 401, "canceled")
    assert r.json()["error"]["code"] == "key_revoked"

    deliveries = json.loads(fetch(f"{edge.stack.standin_url}/_standin/deliveries")[1])["data"]
    assert deliveries and all(d["status"] == 200 for d in deliveries)
    assert all(key not in line for line in edge.logs)


def test_bad_checkouts_get_clear_400s(edge):
    """Unknown or free tiers and bad JSON are refused with a code, not a 500."""
    hook = f"http://127.0.0.1:{edge.stack.ports.webhook}"
    cases = (
        (b'{"tier": "platinum"}', "unknown_tier"),
        (b'{"tier": "free"}', "tier_not_for_sale"),
        (b"not json", "invalid_json"),
        (b'{"tier": "pro", "email": "nope"}', "invalid_email"),
    )
    for body, code in cases:
        status, raw = fetch(f"{hook}/checkout", body)
        assert status == 400 and json.loads(raw)["error"]["code"] == code


def test_claims_for_unknown_or_unpaid_sessions(edge):
    """A claim names a bad id (400), an unknown session (404) or an unpaid one (409)."""
    hook = f"http://127.0.0.1:{edge.stack.ports.webhook}"
    table = parse_tiers(edge.stack.tiers.read_text(), "tiers")
    asyncio.run(seed_prices(edge.stack.standin_url, table))
    unpaid = post_json(f"{hook}/checkout", {"tier": "pro"})["id"]
    cases = (
        ("nope", 400, "invalid_session_id"),
        ("cs_test_doesnotexist", 404, "unknown_session"),
        (unpaid, 409, "checkout_incomplete"),
    )
    for session, want, code in cases:
        status, raw = fetch(f"{hook}/keys/claim?session_id={session}")
        assert status == want and json.loads(raw)["error"]["code"] == code


def test_webhook_killed_while_deliveries_are_retried(edge):
    """SIGKILL the webhook service, let Stripe's deliveries fail and retry (a paid checkout,
    a failed payment, an upgrade, a recovery), then restart it: the key ends up exactly as
    Stripe says, one key for the checkout, each event applied once."""
    table = parse_tiers(edge.stack.tiers.read_text(), "tiers")
    prices = asyncio.run(seed_prices(edge.stack.standin_url, table))
    hook = f"http://127.0.0.1:{edge.stack.ports.webhook}"
    session = post_json(f"{hook}/checkout", {"tier": "pro", "email": "kill@example.com"})
    before = len(json.loads(fetch(f"{edge.stack.standin_url}/_standin/deliveries")[1])["data"])

    assert edge.stack.kill("webhook") == -9
    with pytest.raises(urllib.error.URLError):  # "pays"; the redirect to the dead claim fails
        fetch(session["url"], PAY)
    events = json.loads(fetch(f"{edge.stack.standin_url}/_standin/events")[1])["data"]
    completed = [e for e in events if e["type"] == "checkout.session.completed"]
    sub_id = completed[-1]["data"]["object"]["subscription"]
    trigger(edge, "invoice.payment_failed", subscription=sub_id)
    trigger(
        edge, "customer.subscription.updated", subscription=sub_id, price=prices["tollway_business"]
    )
    trigger(edge, "invoice.paid", subscription=sub_id)
    time.sleep(1.0)  # deliveries fail and are retried meanwhile
    edge.stack.start("webhook")

    def delivered() -> list[dict]:
        data = json.loads(fetch(f"{edge.stack.standin_url}/_standin/deliveries")[1])["data"]
        return data[before:]

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        events = {d["event"] for d in delivered()}
        done = {d["event"] for d in delivered() if d["status"] == 200}
        if events and events == done and len(events) >= 4:
            break
        time.sleep(0.2)
    attempts = delivered()
    assert any(d["status"] != 200 for d in attempts), "no delivery failed: the kill did not bite"
    ok_per_event = Counter(d["event"] for d in attempts if d["status"] == 200)
    assert ok_per_event and set(ok_per_event.values()) == {1}, attempts

    status, raw = fetch(f"{hook}/keys/claim?session_id={session['id']}")
    assert status == 200, raw
    claim = json.loads(raw)
    edge.issued.append(claim["api_key"])
    r = within_1s(edge, claim["api_key"], lambda r: r.status == 200, "after the restart")
    assert r.upstream_saw("x-tollway-tier") == ["business"] and "x-tollway-warning" not in r.headers
    assert edge.redis.smembers(schema.owned_keys(sub_id)) == {claim["key_id"]}  # one key
    state = edge.redis.hgetall(schema.subscription_state(sub_id))
    assert state["status"] == "active"


def test_unsigned_and_oversized_webhooks_are_refused(edge):
    """A delivery without a valid signature is 400, an oversized one 413; nothing changes."""
    hook = f"http://127.0.0.1:{edge.stack.ports.webhook}/webhooks/stripe"
    body = json.dumps(
        {"id": "evt_x", "type": "customer.deleted", "data": {"object": {"id": "cus_x"}}}
    ).encode()
    for headers in ({}, {"Stripe-Signature": "t=1,v1=00"}):
        status, raw = fetch(hook, body, headers)
        assert status == 400, raw
    status, _ = fetch(hook, b"x" * ((1 << 20) + 1), {"Stripe-Signature": "t=1,v1=00"})
    assert status == 413


def test_webhook_metrics_and_graceful_stop(edge):
    """/metrics counts applied events and refusals by code; SIGTERM exits 0."""
    hook = f"http://127.0.0.1:{edge.stack.ports.webhook}"
    fetch(f"{hook}/webhooks/stripe", b"{}")  # no signature
    status, text = fetch(f"{hook}/metrics")
    assert status == 200
    assert 'tollway_webhook_rejected_total{code="missing_signature"}' in text.decode()
    assert "tollway_webhook_apply_seconds_count" in text.decode()
    assert fetch(f"{hook}/healthz")[0] == 200
    assert edge.stack.stop("webhook") == 0
