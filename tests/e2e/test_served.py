"""Billing what was served: Stripe receives what the tier bills of what Envoy actually served.

Real Envoy, authz, Redis, metering, the access-log receiver and the Stripe stand-in. Client
threads call the demo upstream, which answers 5xx on about a fifth of the requests, resets
some connections, and reports token amounts in x-tollway-usage. Meanwhile the metering daemon
is SIGKILLed and restarted, and each of the two access-log receivers is restarted in turn (Envoy
streams to the other meanwhile: README "What is billed" says why two). At the end, per
customer:

- requests billed == responses whose final status the tier bills (below 500, by default);
- tokens billed == the sum of the amounts of those responses;
- `tollway reconcile` finds no drift on either meter.

Runs in every mode `make test` runs (single redis-server and Redis Cluster, gRPC and HTTP).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter

import pytest

from cli.main import main as cli
from devkit.seed import seed_prices
from tests.e2e.conftest import Edge, fetch, request, running_edge
from tests.support import TEST_TIERS
from tollway import schema
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.e2e
SERVED_TIER = """
[tiers.served]
requests_per_second = 100000.0
burst = 100000
monthly_quota = 1000000
over_quota = "block"
usage_meter = "tokens"
"""
CUSTOMERS = ["cus_served_a", "cus_served_b", "cus_served_c"]
REQUESTS_PER_KEY = 400
ENV = {"TOLLWAY_USAGE_WINDOW_S": "1", "TOLLWAY_METERING_INTERVAL": "0.3",
       "TOLLWAY_METERING_CLOSE_SLACK_S": "0", "TOLLWAY_METERING_LOG_GRACE_S": "2",
       "TOLLWAY_METERING_ATTEMPTS": "3", "TOLLWAY_METERING_SEND_LOCK_S": "2"}  # fmt: skip


def pick(rng: random.Random) -> tuple[str, int]:
    """A path for the upstream, and the tokens it reports."""
    roll = rng.random()
    if roll < 0.55:
        n = rng.randint(1, 50)
        return f"/usage/{n}", n
    if roll < 0.75:
        return f"/status/{rng.choice([500, 502, 503])}", 0
    if roll < 0.83:
        return "/reset", 0
    if roll < 0.90:
        return "/status/404", 0
    if roll < 0.95:
        return "/usage/7?status=500", 7  # a failed call's amount is never billed
    return "/v1/things", 0


def billed(edge: Edge) -> dict[str, Counter[str]]:
    """Meter -> customer -> value, of every meter event the stand-in accepted."""
    events = json.loads(fetch(f"{edge.stack.standin_url}/_standin/meter_events")[1])["data"]
    out: dict[str, Counter[str]] = {"api_requests": Counter(), "tokens": Counter()}
    for e in events:
        out.setdefault(e["event_name"], Counter())[e["payload"]["stripe_customer_id"]] += int(
            e["payload"]["value"]
        )
    return out


@pytest.mark.timeout(300)
@pytest.mark.parametrize("limiter", ["exact", "lease"])
def test_stripe_gets_what_the_tier_bills_of_what_envoy_served(tmp_path, limiter):
    """In lease mode most requests are let through from a lease and counted when it is
    settled, possibly after their refund arrived: totals must still come out exact."""
    tiers = TEST_TIERS + SERVED_TIER + f'limiter = "{limiter}"\n'
    with running_edge(tmp_path, tiers, env=ENV, receivers=2) as edge:
        asyncio.run(
            seed_prices(edge.stack.standin_url, parse_tiers(edge.stack.tiers.read_text(), "t"))
        )
        keys = [(c, edge.issue("served", customer=c)[0]) for c in CUSTOMERS for _ in range(2)]
        want_requests: Counter[str] = Counter()
        want_tokens: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        lock = threading.Lock()

        restarted = threading.Event()

        def drive(seed: int, customer: str, key: str) -> None:
            rng = random.Random(seed)
            # At least REQUESTS_PER_KEY, and on until the kills and restarts are over (so the
            # traffic overlaps them however slowly a busy machine restarts a process), at most
            # five times as many.
            for n in range(5 * REQUESTS_PER_KEY):
                if n >= REQUESTS_PER_KEY and restarted.is_set():
                    break
                time.sleep(0.015)  # spread over the kills and the restarts: about 8 s a key
                path, tokens = pick(rng)
                r = request(edge.stack.ports.envoy, path, {"x-api-key": key})
                assert "x-tollway-usage" not in r.headers  # removed before the client
                with lock:
                    statuses[r.status] += 1
                    if r.status < 500:  # the default bill_statuses: 2xx, 3xx, 4xx
                        want_requests[customer] += 1
                        want_tokens[customer] += tokens

        threads = [threading.Thread(target=drive, args=(i, *k)) for i, k in enumerate(keys)]
        for t in threads:
            t.start()
        rng = random.Random(11)
        for step in range(4):
            time.sleep(rng.uniform(0.2, 0.5))
            edge.stack.kill("metering")
            edge.stack.start("metering")
            if step in (1, 2):  # each receiver restarts while Envoy streams to the other
                name = ["receiver", "receiver-1"][step - 1]
                edge.stack.stop(name)
                edge.stack.start(name)
                assert all(t.is_alive() for t in threads), "the restart came after the traffic"
        restarted.set()
        for t in threads:
            t.join(120)
        served = sum(statuses.values())
        assert served >= len(keys) * REQUESTS_PER_KEY and not any(t.is_alive() for t in threads)
        # The faults happened, and most calls reached the upstream (a starved machine may see
        # a rare 503 from authz's store timeout: not counted, and not billed either).
        assert 0.15 * served < sum(n for s, n in statuses.items() if s >= 500) < 0.5 * served
        assert statuses[200] > 0.4 * served, statuses

        want = {"api_requests": want_requests, "tokens": want_tokens}
        deadline = time.monotonic() + 60
        while billed(edge) != want and time.monotonic() < deadline:
            time.sleep(0.5)
        got = billed(edge)
        tail = [line for line in edge.logs if line.startswith(("metering", "receiver"))][-20:]
        assert got == want, (got, want, statuses, tail)
        time.sleep(3)  # a few more drain passes: nothing more may arrive
        assert billed(edge) == want
        # What Envoy's own timeout cost: checks authz counted whose answer came too late
        # (Envoy answered 503 itself). Each was refunded, or billed != want above.
        unheard = sum(float(x.split()[-1]) for x in edge.authz_metrics().splitlines()
                      if x.startswith("tollway_authz_answers_unheard_total "))  # fmt: skip
        print(f"[served] requests {served}, statuses {dict(statuses)}, unheard {unheard:g}")

        for customer in CUSTOMERS:
            code = cli(["reconcile", "--customer", customer, "--since", "1970-01-01",
                        "--redis-url", edge.stack.effective_redis_url, "--tiers", str(edge.stack.tiers),
                        "--stripe-api-base", edge.stack.standin_url])  # fmt: skip
            assert code == 0, f"reconcile found drift for {customer}"
        # Quota follows what was billed: refund_quota gives a failed call's quota back.
        for customer in CUSTOMERS:
            used = int(edge.redis.hget(schema.account_state(customer), "q_used") or 0)
            assert used == want_requests[customer], (customer, used, want_requests[customer])


@pytest.mark.timeout(120)
def test_a_client_chosen_request_id_does_not_change_what_is_billed(tmp_path):
    """A client that sends one fixed x-request-id on every request, a malformed one, a
    150-character one, or none, is billed every amount the upstream reported, exactly: billing
    names a request by authz's own nonce, never by the client's id."""
    with running_edge(tmp_path, TEST_TIERS + SERVED_TIER, env=ENV) as edge:
        asyncio.run(
            seed_prices(edge.stack.standin_url, parse_tiers(edge.stack.tiers.read_text(), "t"))
        )
        key, _ = edge.issue("served", customer="cus_rid")
        ids = [{"x-request-id": "6f1c2a9e-0000-4000-8000-000000000001"}] * 5 + [
            {"x-request-id": "not a uuid!"}, {"x-request-id": "x" * 150}, {}, {}]  # fmt: skip
        statuses = [edge.get("/usage/40", key, headers=h).status for h in ids]
        assert statuses == [200] * len(ids)
        want = {"api_requests": Counter({"cus_rid": len(ids)}),
                "tokens": Counter({"cus_rid": 40 * len(ids)})}  # fmt: skip
        deadline = time.monotonic() + 30
        while billed(edge) != want and time.monotonic() < deadline:
            time.sleep(0.5)
        assert billed(edge) == want
        time.sleep(2)  # a few more drain passes: nothing more may arrive
        assert billed(edge) == want


def metering_metric(edge: Edge, name: str) -> float | None:
    text = fetch(f"http://127.0.0.1:{edge.stack.ports.metering}/metrics")[1].decode()
    values = [float(x.split()[-1]) for x in text.splitlines() if x.startswith(f"{name} ")]
    return values[0] if values else None


@pytest.mark.timeout(120)
def test_with_the_access_log_down_usage_stays_as_counted_and_metering_says_so(tmp_path):
    """No receiver: nothing is refunded, so failed calls are billed as counted at check time
    (never under-billed), and metering's metric and log say refunds are not being applied."""
    env = {**ENV, "TOLLWAY_METERING_LOG_GRACE_S": "1"}  # silent after 5 s (the floor)
    with running_edge(tmp_path, TEST_TIERS + SERVED_TIER, env=env) as edge:
        asyncio.run(
            seed_prices(edge.stack.standin_url, parse_tiers(edge.stack.tiers.read_text(), "t"))
        )
        key, _ = edge.issue("served", customer="cus_log_down")
        assert edge.get("/v1/things", key).status == 200  # Envoy opens its log stream
        heard = lambda: edge.redis.get(schema.ACCESS_LOG_HEARD) is not None  # noqa: E731
        wait_for(heard, "the receiver hears Envoy", 10)
        edge.stack.stop("receiver")
        wait_for(lambda: metering_metric(edge, "tollway_metering_access_log_silent") == 1.0,
                 "metering reports the access log silent", 20)  # fmt: skip
        assert any('"access_log_silent"' in line for line in edge.logs)
        statuses = [edge.get("/status/500", key).status for _ in range(10)]
        statuses += [edge.get("/usage/9", key).status for _ in range(3)]
        assert statuses == [500] * 10 + [200] * 3
        want = Counter({"cus_log_down": 14})  # every request, as counted: none refunded
        wait_for(lambda: billed(edge)["api_requests"] == want, "billed as counted", 30)
        time.sleep(2)
        assert billed(edge)["api_requests"] == want
        assert billed(edge)["tokens"] == Counter()  # no log, no reported amounts


def wait_for(check, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.2)
