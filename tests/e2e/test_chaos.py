"""Metering chaos: what Stripe bills equals what Envoy let through, to the request.

Real Envoy, authz, Redis, metering and the Stripe stand-in. Client threads drive allowed
requests for several customers while the metering daemon is SIGKILLed at random moments and
the stand-in answers with 429s, 5xx, resets and accepted-but-lost responses. At the end the
accepted meter events per customer must equal the client's own count of 2xx responses.
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
from tests.e2e.conftest import fetch, request, running_edge
from tests.support import TEST_TIERS
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.e2e
LOAD_TIER = """
[tiers.load]
requests_per_second = 100000.0
burst = 100000
monthly_quota = 0
over_quota = "bill"
"""
CUSTOMERS = ["cus_chaos_a", "cus_chaos_b", "cus_chaos_c"]
REQUESTS_PER_KEY = 300
KILLS = 6
FAULTS = [
    {"status": 429, "retry_after": 1, "times": 3},
    {"status": 500, "times": 3},
    {"kind": "lost", "times": 3},
    {"kind": "reset", "times": 2},
]
PATHS = {"v1": "/v1/billing/meter_events", "stream": "/v2/billing/meter_event_stream"}


def billed(edge) -> Counter[str]:
    events = json.loads(fetch(f"{edge.stack.standin_url}/_standin/meter_events")[1])["data"]
    out: Counter[str] = Counter()
    for e in events:
        out[e["payload"]["stripe_customer_id"]] += int(e["payload"]["value"])
    return out


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["v1", "stream"])
def test_billing_equals_2xx_through_kills_and_stripe_faults(tmp_path, mode):
    """SIGKILL the daemon 6 times and inject every Stripe fault: billed == 2xx, per customer."""
    env = {"TOLLWAY_USAGE_WINDOW_S": "1", "TOLLWAY_METERING_INTERVAL": "0.3",
           "TOLLWAY_METERING_CLOSE_SLACK_S": "0", "TOLLWAY_METERING_LOG_GRACE_S": "1",
           "TOLLWAY_METERING_ATTEMPTS": "3",
           "TOLLWAY_METERING_SEND_LOCK_S": "2", "TOLLWAY_METERING_SINK": mode}  # fmt: skip
    with running_edge(tmp_path, TEST_TIERS + LOAD_TIER, env=env) as edge:
        asyncio.run(
            seed_prices(edge.stack.standin_url, parse_tiers(edge.stack.tiers.read_text(), "t"))
        )
        keys = [(c, edge.issue("load", customer=c)[0]) for c in CUSTOMERS for _ in range(2)]
        ok: Counter[str] = Counter()
        lock = threading.Lock()

        def drive(customer: str, key: str) -> None:
            for _ in range(REQUESTS_PER_KEY):
                r = request(edge.stack.ports.envoy, "/v1/things", {"x-api-key": key})
                if 200 <= r.status < 300:
                    with lock:
                        ok[customer] += 1

        threads = [threading.Thread(target=drive, args=k) for k in keys]
        for t in threads:
            t.start()
        rng = random.Random(7)
        faults = iter(FAULTS)
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.6))
            edge.stack.kill("metering")
            fault = next(faults, None)
            if fault is not None:
                fault = {**fault, "path": PATHS[mode]}
                assert fetch(f"{edge.stack.standin_url}/_standin/faults", json.dumps(fault).encode(),
                             {"content-type": "application/json"})[0] == 200  # fmt: skip
            edge.stack.start("metering")
        for t in threads:
            t.join(120)
        # The load tier refuses nothing, but a starved 2-core CI machine (three cluster nodes,
        # Envoy, two services and the load) may see a rare 100 ms store timeout: a 503 that
        # counts nothing. What must hold exactly is below: billed == 2xx.
        assert sum(ok.values()) >= 0.99 * len(keys) * REQUESTS_PER_KEY, dict(ok)

        deadline = time.monotonic() + 40
        while billed(edge) != ok and time.monotonic() < deadline:
            time.sleep(0.5)
        tail = [line for line in edge.logs if line.startswith("metering")][-15:]
        assert billed(edge) == ok, (dict(billed(edge)), dict(ok), tail)
        time.sleep(2)  # a few more drain passes: nothing more may arrive
        assert billed(edge) == ok

        status, metrics = fetch(f"http://127.0.0.1:{edge.stack.ports.metering}/metrics")
        assert status == 200
        for name in ("tollway_metering_pending_windows", "tollway_metering_oldest_pending_seconds",
                     "tollway_metering_events_sent_total", "tollway_metering_retries_total",
                     "tollway_metering_dead_letters_total"):  # fmt: skip
            assert name in metrics.decode(), name
        assert fetch(f"http://127.0.0.1:{edge.stack.ports.metering}/healthz")[0] == 200

        deliveries = json.loads(fetch(f"{edge.stack.standin_url}/_standin/meter_events")[1])["data"]
        assert len({e["identifier"] for e in deliveries}) == len(deliveries)
        for customer in CUSTOMERS:
            code = cli(["reconcile", "--customer", customer, "--since", "1970-01-01",
                        "--redis-url", edge.stack.effective_redis_url, "--tiers", str(edge.stack.tiers),
                        "--stripe-api-base", edge.stack.standin_url])  # fmt: skip
            assert code == 0, f"reconcile found drift for {customer}"
